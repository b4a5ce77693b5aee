"""sparsecc.runtime.hls: the hand-written HLS kernel headers and the C-simulation bridge.

* ``include/sparsecc/*.h`` — templated Vitis HLS C++ kernels (see :func:`kernel_include_dir`);
* :mod:`.formats` — numpy writers of the weight formats those kernels read (ELL, CSC, complementary);
* :mod:`.csim` — compile HLS C++ with g++ against hls4ml's ap_types headers and run it on numpy arrays.
"""

from .csim import (
    CSimulationError,
    SharedLibrary,
    ap_types_include_dir,
    compile_cpp,
    kernel_include_dir,
    read_binary,
    run_executable,
    write_binary,
)

__all__ = [
    "CSimulationError",
    "SharedLibrary",
    "ap_types_include_dir",
    "compile_cpp",
    "kernel_include_dir",
    "read_binary",
    "run_executable",
    "write_binary",
]
