"""The cuda target: NVIDIA GPU code through TVM, cross-compiled anywhere, exported as one library plus a manifest.

Each fused sparse op becomes a GPU TIR kernel specialised to its constant weights and sparsity
(:mod:`.kernels`, chosen per op by :mod:`.lowering`); every other op goes through TVM's generic lowering and
DLight's default GPU schedules. The module is compiled by TVM for ``sm_80`` (the code generator's target; the
kernels use no newer feature) with a portable x86-64 host, and the device source is compiled by nvcc into one
fat binary with SASS for sm_80 and sm_90 and compute_80 PTX (:mod:`.nvcc`), which is embedded in the exported
``model.so`` (:mod:`.library`). Nothing here needs a GPU; running the artifact does (:mod:`.runtime`).

Options of :func:`compile`: ``archs`` (default ``("sm_80", "sm_90")``), ``emit_source`` (a directory:
``source/kernels.cu`` and ``source/kernels.ptx`` are written there, inside the artifact when it is the
directory the model is exported to) and ``cuda_graph`` (with a fixed batch: the whole inference is captured in
a CUDA graph on the first run and replayed after, one launch instead of one per kernel) and ``fast_math`` (no
IEEE guards, :mod:`.ieee`: inputs holding inf/NaN may then give finite results where the interpreter gives NaN).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from ...compiler.errors import CompileError, DeviceUnavailableError
from ...compiler.ir.core import Module
from ...runtime.artifact import Manifest, make_manifest
from ...runtime.native_stderr import filtered_native_stderr
from ...runtime.tvm_model import LIBRARY, TVMModel
from ..finite_constants import refuse_non_finite_layers
from ..relax_lowering import relax_pipeline as shared_relax_pipeline
from .library import pack_imports_with_device_code
from .lowering import CUDALowering
from .nvcc import ARCHS, DeviceBinary, compile_device_code, nvcc_version

#: The architecture TVM generates code for; the fat binary adds SASS for the others in ``archs``.
CODEGEN_ARCH = "sm_80"
HOST_TRIPLE = "x86_64-linux-gnu"


def cuda_target(arch: str = CODEGEN_ARCH) -> tvm.target.Target:
    """The TVM target: CUDA device code for ``arch`` with a portable x86-64 host."""
    return tvm.target.Target(
        {"kind": "cuda", "arch": arch, "max_shared_memory_per_block": 49152, "max_threads_per_block": 1024,
         "thread_warp_size": 32},
        host={"kind": "llvm", "mtriple": HOST_TRIPLE})


def relax_pipeline(target: tvm.target.Target, cuda_graph: bool = False) -> tvm.transform.Pass:
    """The shared Relax pipeline with DLight's default GPU schedules for the legalized generic ops; reshapes
    are views (no copy kernel); with ``cuda_graph`` the static-shape regions become CUDA graphs.

    sparsecc's own kernels are marked ``tirx.is_scheduled`` (DLight leaves them alone) and opaque (never
    fused)."""
    from tvm.s_tir import dlight as dl

    return shared_relax_pipeline(target, [dl.ApplyDefaultSchedule(
        dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())],
        reshape_views=True, cuda_graph=cuda_graph)


@contextlib.contextmanager
def _device_compiler(archs: Sequence[str], compiled: dict[str, DeviceBinary]) -> Iterator[list[BaseException]]:
    """While building: TVM's CUDA compile hook compiles with :func:`compile_device_code`.

    On a machine with a CUDA driver, TVM compiles device code during the build through the global
    ``tvm_callback_cuda_compile`` (NVRTC by default); this routes it to nvcc with sparsecc's flags and
    architectures, and restores the previous hook afterwards. Without a driver TVM does not call it."""
    import tvm_ffi

    name = "tvm_callback_cuda_compile"
    previous = tvm_ffi.get_global_func(name, allow_missing=True)
    errors: list[BaseException] = []

    def compile_source(code: str) -> bytearray:
        try:
            binary = compile_device_code(str(code), archs)
        except BaseException as exc:
            errors.append(exc)
            raise
        compiled[str(code)] = binary
        return bytearray(binary.fatbin)

    tvm_ffi.register_global_func(name, compile_source, override=True)
    try:
        yield errors
    finally:
        if previous is not None:
            tvm_ffi.register_global_func(name, previous, override=True)
        else:
            tvm_ffi.remove_global_func(name)


def build_kernel(func: tvm.tirx.PrimFunc, name: str = "main", archs: Sequence[str] = ARCHS) -> Any:
    """Build one GPU PrimFunc (e.g. from :mod:`.kernels`) into a runtime module callable as ``mod[name]``,
    compiling its device code with :func:`compile_device_code` (for tests and kernel benchmarks on a GPU)."""
    compiled: dict[str, DeviceBinary] = {}
    with _device_compiler(tuple(archs), compiled):
        return tvm.compile(tvm.IRModule({name: func.with_attr("global_symbol", name)}), target=cuda_target())


def device_module(executable: Any) -> Any:
    """The CUDA module inside a built Relax executable (or loaded library)."""
    root = executable.mod if hasattr(executable, "mod") else executable
    stack, seen = [root], set()
    while stack:
        mod = stack.pop()
        if mod.kind == "cuda":
            return mod
        for child in mod.imports:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    raise CompileError("TVM produced no CUDA module (the model has no GPU kernel)")


class CUDAModel(TVMModel):
    """A model compiled for cuda: the Relax executable and its device code (``kernels.cu``, ``kernels.ptx``)."""

    def __init__(self, manifest: Manifest, executable: Any, binary: DeviceBinary, source: str,
                 embedded_code: bytes) -> None:
        super().__init__(manifest, executable, sources={"kernels.cu": source, "kernels.ptx": binary.ptx})
        self.binary = binary
        self.source = source
        self._embedded_code = embedded_code  # what TVM put in the CUDA module (source, or our fat binary)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def _write_library(self, file: Path) -> None:
        with filtered_native_stderr():
            self._executable.mod.export_library(
                str(file), fpack_imports=pack_imports_with_device_code(self._embedded_code, self.binary.fatbin))

    def _machine(self) -> Any:
        if self._vm is None and not device_module(self._executable).is_runnable():
            # built where TVM's CUDA runtime was not loaded: run the exported library instead
            self.device  # noqa: B018  (raises DeviceUnavailableError first when there is no GPU)
            self._scratch = tempfile.TemporaryDirectory(prefix="sparsecc-cuda-")
            loaded = TVMModel.load(self.export(Path(self._scratch.name) / "model"))
            self._executable = loaded._executable
        return super()._machine()


def require_device() -> None:
    """Raise DeviceUnavailableError (one line, naming what is missing) unless a usable GPU is present."""
    from ...runtime.cuda import cuda_device

    cuda_device()


def compile(module: Module, *, pipeline: str, batch: int | None, progress: Callable[[str], None] | None = None,
            emit_source: str | os.PathLike[str] | None = None, archs: Sequence[str] = ARCHS,
            cuda_graph: bool = False, fast_math: bool = False) -> CUDAModel:
    """Compile an optimised module for NVIDIA GPUs (``archs``); no GPU is needed to compile."""
    archs = tuple(archs)
    if not isinstance(cuda_graph, bool):
        raise CompileError(f"cuda_graph must be True or False, not {cuda_graph!r}")
    if not isinstance(fast_math, bool):
        raise CompileError(f"fast_math must be True or False, got {type(fast_math).__name__} {fast_math!r}")
    if cuda_graph and batch is None:
        raise CompileError("cuda_graph=True needs a fixed batch (compile with batch=N): a CUDA graph replays "
                           "fixed shapes")
    version = nvcc_version()  # fail early, in one line, when there is no CUDA toolkit
    target = cuda_target()
    refuse_non_finite_layers(module, "cuda")  # the sparse kernels would lose 0 * inf of an infinite weight
    irmod = CUDALowering(module, progress, fast_math=fast_math).build()
    if progress:
        progress(f"compiling with TVM for cuda ({len(irmod.functions)} functions)")
    compiled: dict[str, DeviceBinary] = {}
    with _device_compiler(archs, compiled) as hook_errors:
        try:
            with tvm.transform.PassContext(config={"relax.backend.use_cuda_graph": cuda_graph}):
                executable = relax.build(irmod, target=target, relax_pipeline=relax_pipeline(target, cuda_graph))
        except Exception as exc:  # TVM's errors are not SparseccErrors: name the stage
            for error in hook_errors:
                if isinstance(error, CompileError):
                    raise error from None
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise CompileError(f"TVM failed to build the module for cuda: {lines[-1] if lines else exc}") from exc
    cuda = device_module(executable)
    source = str(cuda.inspect_source("cuda"))
    if source in compiled:  # TVM compiled it through the hook (a machine with a CUDA driver)
        binary = compiled[source]
        embedded = binary.fatbin
    else:
        if progress:
            progress(f"compiling device code with nvcc {version} for {', '.join(archs)}")
        binary = compile_device_code(source, archs)
        embedded = source.encode()
    from .lowering import kernel_names

    manifest = make_manifest(module, "cuda", pipeline, batch, {"library": LIBRARY}, {
        "archs": list(binary.archs), "ptx": f"compute_{binary.archs[0][3:]}", "codegen_arch": CODEGEN_ARCH,
        "nvcc": version, "host_triple": HOST_TRIPLE, "kernels": kernel_names(source), "cuda_graph": cuda_graph,
        "fast_math": fast_math})
    model = CUDAModel(manifest, executable, binary, source, embedded)
    if emit_source is not None:
        model.request_sources(emit_source)
    return model


__all__ = ["ARCHS", "CUDAModel", "DeviceUnavailableError", "build_kernel", "compile", "cuda_target",
           "relax_pipeline", "require_device"]
