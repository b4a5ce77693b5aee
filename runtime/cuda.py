"""What running a cuda artifact needs, and saying in one line what is missing.

TVM 0.27 runs CUDA kernels through ``libtvm_runtime_cuda.so`` (in the ``apache-tvm`` wheel), which ``import
tvm`` loads when it can. That library needs

* ``libcuda.so.1`` — the NVIDIA driver, with a GPU it can see; the driver must support CUDA 13 (R580 or newer),
  because the wheel's runtime was built against CUDA 13;
* ``libcudart.so.13`` — the CUDA 13 runtime: from a CUDA 13 toolkit on the library path, or from PyPI
  (``pip install nvidia-cuda-runtime==13.*``, which installs it under ``site-packages/nvidia/cu13/lib``).

No CUDA compiler is needed: the artifact carries SASS for sm_80 and sm_90 plus compute_80 PTX.
``import tvm`` silently skips the CUDA runtime when either library is missing, and ``tvm.cuda(0).exist`` is then
false even on a GPU machine. :func:`cuda_device` loads a pip-installed CUDA runtime that is not on the library
path, retries TVM's CUDA runtime, and otherwise raises :class:`DeviceUnavailableError` naming the missing piece.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path
from typing import Any

from ..compiler.errors import DeviceUnavailableError

#: The CUDA runtime major version that apache-tvm 0.27's libtvm_runtime_cuda.so links against.
CUDART_MAJOR = 13
#: cuDriverGetVersion() of the oldest driver that runs CUDA 13 code.
MIN_DRIVER_API = 13000


def _pip_cudart() -> list[str]:
    """libcudart.so.13 files installed by the nvidia-cuda-runtime wheel in any site-packages on sys.path."""
    found = []
    for entry in sys.path:
        found += glob.glob(os.path.join(entry, "nvidia", "*", "lib", f"libcudart.so.{CUDART_MAJOR}"))
    return found


def _load_tvm_cuda_runtime() -> str | None:
    """Try to load TVM's CUDA runtime (after a pip-installed libcudart); returns the loader's error, if any."""
    import tvm
    from tvm.base import _LOADED_LIBS

    if "tvm_runtime_cuda" in _LOADED_LIBS:
        return None
    for cudart in _pip_cudart():
        try:
            ctypes.CDLL(cudart, mode=ctypes.RTLD_GLOBAL)
            break
        except OSError:
            continue
    library = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
    if not library.is_file():
        return f"{library.name} is not part of this TVM installation (a CUDA-enabled apache-tvm is needed)"
    try:
        from tvm_ffi.libinfo import load_lib_ctypes

        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
            package="tvm", target_name="tvm_runtime_cuda", extra_lib_paths=[library.parent], mode="RTLD_LOCAL")
    except (OSError, RuntimeError, FileNotFoundError) as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _driver_problem() -> str | None:
    """None when the NVIDIA driver is present, initialises and sees a GPU; else what is wrong."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return ("no NVIDIA driver on this machine (libcuda.so.1 not found); run the artifact on a machine with "
                "an NVIDIA GPU (sm_80 or newer) and driver R580+")
    rc = libcuda.cuInit(0)
    if rc != 0:
        return f"the NVIDIA driver is installed but cannot initialise (cuInit error {rc}): no usable GPU"
    count = ctypes.c_int(0)
    if libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver sees no GPU (check CUDA_VISIBLE_DEVICES)"
    version = ctypes.c_int(0)
    libcuda.cuDriverGetVersion(ctypes.byref(version))
    if version.value < MIN_DRIVER_API:
        major, minor = version.value // 1000, version.value % 1000 // 10
        return (f"the NVIDIA driver supports CUDA {major}.{minor}, but TVM's CUDA runtime needs CUDA "
                f"{CUDART_MAJOR} (driver R580 or newer)")
    return None


def cuda_device(device_id: int = 0) -> Any:
    """The TVM CUDA device; raises DeviceUnavailableError with the reason when it cannot be used."""
    import tvm

    dev = tvm.cuda(device_id)
    if dev.exist:
        return dev
    problem = _driver_problem()
    if problem is None:
        error = _load_tvm_cuda_runtime()
        dev = tvm.cuda(device_id)
        if dev.exist:
            return dev
        if error is not None:
            problem = (f"TVM's CUDA runtime (libtvm_runtime_cuda.so) cannot be loaded: {error}; install the CUDA "
                       f"{CUDART_MAJOR} runtime (pip install 'nvidia-cuda-runtime=={CUDART_MAJOR}.*' or a CUDA "
                       f"{CUDART_MAJOR} toolkit on the library path)")
        else:
            problem = f"TVM sees no CUDA device {device_id} although the NVIDIA driver reports a GPU"
    raise DeviceUnavailableError(f"cannot run a cuda artifact here: {problem}")


def check_architecture(dev: Any, archs: list[str]) -> str | None:
    """None when code for ``archs`` (SASS for each, PTX for the lowest) runs on ``dev``; else why not."""
    try:
        major, minor = (int(v) for v in str(dev.compute_version).split("."))
    except (ValueError, AttributeError):
        return None
    have = major * 10 + minor
    numbers = sorted(int(a[3:]) for a in archs if a.startswith("sm_") and a[3:].isdigit())
    if not numbers or have >= numbers[0]:
        return None
    return (f"this GPU is sm_{have}, but the artifact holds code for {', '.join(archs)} (PTX for sm_{numbers[0]} "
            f"and newer); recompile with archs=('sm_{have}',)")
