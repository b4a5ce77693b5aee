"""The llvm target: CPU code through TVM's LLVM backend, exported as one shared library plus a manifest.

Each fused op is lowered to a TIR kernel specialised to its constant weights and sparsity (see
``targets/llvm/kernels``); ops without a specialised kernel use TVM's generic lowering. The module is
assembled as a Relax VM program and compiled for the host CPU with an explicit triple and CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tvm

from ...compiler.errors import CompileError
from ...compiler.ir import ops
from ...compiler.ir.core import Module
from ...compiler.kernel_profile import load_profile, profile_for
from ...runtime.artifact import make_manifest
from ...runtime.host import cannot_execute
from ...runtime.tvm_model import LIBRARY, TVMModel, load_library
from ..options import LLVMTargetOptions
from ..relax_lowering import RelaxLowering
from .build import build_library
from .cpu import CpuTarget, resolve_cpu
from .ieee import refuse_non_finite_constants
from .lowering import KERNELS


def host_cpu() -> str:
    """The host CPU as LLVM names it (e.g. ``znver3``), or the baseline when LLVM does not know it."""
    return resolve_cpu().mcpu


def host_target(mcpu: str | None = None, num_cores: int | None = None, mtriple: str | None = None,
                mattr: str | list[str] | None = None) -> tvm.target.Target:
    """The TVM target for a CPU choice (default: this host)."""
    return resolve_cpu(mcpu, mtriple, mattr).tvm_target(num_cores)


#: the C++ cross compiler (driver and linker) used for each architecture that is not the host's
CROSS_CXX = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "x86_64-linux-gnu-g++"}


def _cross_compiler(cpu: CpuTarget) -> str | None:
    if cpu.is_host_arch:
        return None
    cxx = CROSS_CXX[cpu.arch]
    if shutil.which(cxx) is None:
        raise CompileError(f"cross-compiling for {cpu.mtriple} needs the C++ cross compiler {cxx} on PATH "
                           f"(Debian: apt-get install g++-{cpu.arch.replace('_', '-')}-linux-gnu)")
    return cxx


def validate_options(**options: Any) -> str:
    """Check the options (:class:`~sparsecc.targets.options.LLVMTargetOptions`, names already checked) and the CPU
    choice before any work (raises CompileError); returns the kernel profile to plan with: ``profile`` (a built-in
    name or a file from ``sparsecc calibrate``) or the built-in one of the CPU's ISA."""
    chosen = LLVMTargetOptions(**options)
    if not isinstance(chosen.fast_math, bool):
        raise CompileError(f"fast_math must be True or False, got {type(chosen.fast_math).__name__} "
                           f"{chosen.fast_math!r}")
    cpu = resolve_cpu(chosen.mcpu, chosen.mtriple, chosen.mattr)
    _cross_compiler(cpu)
    if chosen.profile is not None:
        load_profile(chosen.profile)  # raises a one-line error for a bad name or file
        return chosen.profile
    return profile_for("llvm", cpu.isa)


def compile(module: Module, *, pipeline: str, batch: int | None, progress: Callable[[str], None] | None = None,
            mcpu: str | None = None, mtriple: str | None = None, mattr: str | list[str] | None = None,
            profile: str | None = None, emit_source: str | os.PathLike[str] | None = None,
            fast_math: bool = False) -> TVMModel:
    """Compile an optimised module for a CPU (default: this host); returns a runnable, exportable model.

    ``mcpu``/``mtriple``/``mattr`` choose the CPU as LLVM names it (see :func:`targets.llvm.cpu.resolve_cpu`);
    code for another architecture is cross-compiled and can be exported, not run here. ``fast_math``: no IEEE
    guard around the specialised kernels (:mod:`.ieee`; recorded in the manifest). ``emit_source``: a
    directory that receives ``source/module.py`` (the Relax program and the TIR kernels as TVMScript) and
    ``source/model.ll`` (the LLVM IR), inside the artifact when it is exported there."""
    cpu = resolve_cpu(mcpu, mtriple, mattr)
    cross = _cross_compiler(cpu)
    target = cpu.tvm_target()
    for op in module.walk((ops.SparseConv2D, ops.SparseLinear, ops.KWinners)):
        refuse_non_finite_constants(op)  # before any lowering: the sparse kernels would lose 0 * inf
    irmod = RelaxLowering(module, KERNELS, progress, isa=cpu.isa, fast_math=fast_math).build()
    if progress:
        progress(f"compiling with TVM for {cpu.describe()} ({len(irmod.functions)} functions)")
    workdir = Path(tempfile.mkdtemp(prefix="sparsecc-llvm-"))
    library = workdir / LIBRARY
    llvm_ir = workdir / "model.ll" if emit_source is not None else None
    try:
        build_library(irmod, target, library, cross_compiler=cross, llvm_ir=llvm_ir)
        options = {**cpu.manifest_entry(), "profile": profile or profile_for("llvm", cpu.isa),
                   "fast_math": fast_math}
        manifest = make_manifest(module, "llvm", pipeline, batch, {"library": LIBRARY}, options)
        problem = cannot_execute(cpu.manifest_entry())
        model = TVMModel(manifest, None if problem else load_library(library), library, not_here=problem)
        if emit_source is not None:
            model.sources = {"module.py": irmod.script(), "model.ll": llvm_ir.read_text() if llvm_ir else ""}
            model.request_sources(emit_source)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, workdir, True)
    return model
