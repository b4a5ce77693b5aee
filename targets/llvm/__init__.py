"""The llvm target: CPU code through TVM's LLVM backend, exported as one shared library plus a manifest.

Each fused op is lowered to a TIR kernel specialised to its constant weights and sparsity (see
``targets/llvm/kernels``); ops without a specialised kernel use TVM's generic lowering. The module is
assembled as a Relax VM program and compiled for the host CPU with an explicit triple and CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import tvm
from tvm import relax

from ...compiler.errors import CompileError
from ...compiler.ir.core import Module
from ...runtime.artifact import make_manifest
from ...runtime.tvm_model import LIBRARY, TVMModel
from ..relax_lowering import RelaxLowering, relax_pipeline
from .lowering import KERNELS

TRIPLE = "x86_64-linux-gnu"


def host_cpu() -> str:
    """The host CPU as LLVM names it (e.g. ``znver5``)."""
    return str(tvm.target.codegen.llvm_get_system_cpu())


def host_target(mcpu: str | None = None, num_cores: int | None = None) -> tvm.target.Target:
    spec: dict[str, Any] = {"kind": "llvm", "mtriple": TRIPLE, "mcpu": mcpu or host_cpu()}
    if num_cores:
        spec["num-cores"] = num_cores
    try:
        return tvm.target.Target(spec)
    except Exception as exc:  # TVM raises its own error types for bad target specs
        raise CompileError(f"invalid llvm target {spec}: {str(exc).splitlines()[0]}") from None


def compile(module: Module, *, pipeline: str, batch: int | None, progress: Callable[[str], None] | None = None,
            mcpu: str | None = None, emit_source: str | os.PathLike[str] | None = None) -> TVMModel:
    """Compile an optimised module for the host CPU; returns a runnable, exportable model.

    ``emit_source``: a directory that receives ``source/module.py`` (the Relax program and the TIR kernels as
    TVMScript) and ``source/model.ll`` (the LLVM IR), inside the artifact when it is exported there."""
    target = host_target(mcpu)
    irmod = RelaxLowering(module, KERNELS, progress).build()
    if progress:
        progress(f"compiling with TVM for {target.attrs['mcpu']} ({len(irmod.functions)} functions)")
    try:
        executable = relax.build(irmod, target=target, relax_pipeline=relax_pipeline(target))
    except Exception as exc:  # TVM's errors are not SparseccErrors: name the stage
        raise CompileError(f"TVM failed to build the module: {str(exc).strip().splitlines()[-1]}") from exc
    manifest = make_manifest(module, "llvm", pipeline, batch, {"library": LIBRARY},
                             {"mtriple": TRIPLE, "mcpu": str(target.attrs["mcpu"])})
    model = TVMModel(manifest, executable)
    if emit_source is not None:
        model.sources = {"module.py": irmod.script(), "model.ll": _llvm_ir(executable)}
        model.request_sources(emit_source)
    return model


def _llvm_ir(executable: Any) -> str:
    """The LLVM IR of the kernels (the llvm module imported by the VM executable)."""
    return "\n".join(str(m.inspect_source("ll")) for m in executable.mod.imports if m.kind == "llvm")
