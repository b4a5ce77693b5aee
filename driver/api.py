"""The public API: import, optimise, interpret, compile, load.

    import sparsecc
    module = sparsecc.import_onnx("gsc_sparse_cnn.onnx")        # IR
    compiled = sparsecc.compile("gsc_sparse_cnn.onnx", target="llvm", batch=None)
    compiled.export("out/gsc")                                   # one shared library + manifest.json
    model = sparsecc.load("out/gsc")
    (logits,) = model.run(None, {"input": x})                    # like onnxruntime's InferenceSession.run
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx

from ..compiler.errors import CompileError, IRParseError, SparseccError
from ..compiler.ir.core import Module
from ..compiler.ir.parser import parse_module
from ..compiler.passes.base import Pass, PassInstrument, PassManager
from ..compiler.passes.builtin import default_pipeline
from ..compiler.passes.specialize_batch import SpecializeBatch
from ..targets.options import option_names

ModelLike = str | os.PathLike[str] | onnx.ModelProto | Module


def load_module(model: ModelLike) -> Module:
    """An IR module from an ONNX file or ModelProto, a textual IR file (``.sir``), or a Module (cloned)."""
    if isinstance(model, Module):
        return model.clone()
    if isinstance(model, onnx.ModelProto):
        from ..frontends.onnx import import_onnx

        return import_onnx(model)
    if not isinstance(model, str | os.PathLike):
        raise SparseccError("model must be a path (ONNX or .sir file), an onnx.ModelProto or a Module, got "
                            f"{type(model).__name__}")
    path = Path(model)
    if path.suffix == ".sir":
        if not path.is_file():
            raise SparseccError(f"IR file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise IRParseError(f"cannot read {path} as UTF-8 IR text: {exc}") from None
        return parse_module(text)
    from ..frontends.onnx import import_onnx

    return import_onnx(path)


def optimize(model: ModelLike, passes: str | Sequence[Pass] | None = None, *, batch: int | None = None,
             print_ir_after_all: TextIO | None = None, progress: Callable[[str], None] | None = None,
             target: str = "generic", profile: str | None = None,
             instruments: Sequence[PassInstrument] = ()) -> tuple[Module, PassManager]:
    """Run a pass pipeline on a copy of the model (default: the standard pipeline with the cost model of
    ``target``).

    ``batch`` fixes the dynamic batch first (``specialize-batch``). ``instruments`` run around every pass
    (e.g. :class:`~sparsecc.compiler.passes.PassTimer`, :class:`~sparsecc.compiler.passes.PrintIR`), after
    the IR verifier. Returns the module and the pass manager (for its timing report).
    """
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int | np.integer)):
        raise SparseccError(f"batch must be an int or None, got {type(batch).__name__} {batch!r}")
    if passes is not None and not isinstance(passes, str) and not (
            isinstance(passes, list | tuple) and all(isinstance(p, Pass) for p in passes)):
        raise SparseccError("passes must be a pipeline string such as 'canonicalize,fuse-kwta', a list of Pass "
                            f"instances, or None; got {type(passes).__name__}")
    module = load_module(model)
    pipeline = default_pipeline(target, profile) if passes is None else passes
    manager = PassManager(pipeline, print_after_all=print_ir_after_all, progress=progress, instruments=instruments)
    if batch is not None:
        manager.passes.insert(0, SpecializeBatch(size=batch))
    manager.run(module)
    return module, manager


def compile(model: ModelLike, target: str = "llvm", passes: str | Sequence[Pass] | None = None, *,
            batch: int | None = None, progress: Callable[[str], None] | None = None, **target_options: Any) -> Any:
    """Optimise ``model`` and compile it for ``target`` (``llvm``, ``cuda`` or ``hls``).

    ``passes``: a pipeline string (``"canonicalize,fuse-kwta"``), a list of Pass instances, or None for the
    target's default pipeline. Returns the target's compiled module (it has ``run`` and ``export``).
    ``batch=None`` keeps the batch dynamic; an int fixes it at compile time.
    """
    from ..targets import get_target

    backend = get_target(target)
    _check_target_options(target, backend.compile, target_options)
    validate = getattr(backend, "validate_options", None)
    # before any work (a bad CPU name is an error now, not after the passes); it names the kernel profile
    profile = validate(**target_options) if validate is not None else None
    module, manager = optimize(model, passes, batch=batch, progress=progress, target=target, profile=profile)
    _check_float32(module, target)
    pipeline = ",".join(str(p) for p in manager.passes)
    return backend.compile(module, pipeline=pipeline, batch=batch, progress=progress, **target_options)


def _check_float32(module: Module, target: str) -> None:
    """The targets compute in float32: a float16/float64 input, constant or result is a CompileError naming it
    (the interpreter runs such models; the targets do not)."""
    for arg in module.func.args:
        if arg.type.dtype in ("f16", "f64"):
            raise CompileError(f"input '{arg.name}' is {arg.type.dtype}: the {target} target supports float32 "
                               "models only (convert the model to float32)")
    for op in module.walk():
        for result in op.results:
            if result.type.dtype in ("f16", "f64"):
                raise CompileError(f"%{result.name} is {result.type.dtype}: the {target} target supports float32 "
                                   "models only (convert the model to float32)", op_type=op.name)


def _check_target_options(target: str, compile_fn: Callable[..., Any], options: dict[str, Any]) -> None:
    """Unknown options of ``target`` are a SparseccError (not a TypeError deep in the target)."""
    params = inspect.signature(compile_fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the target validates its own options (hls)
    known = option_names(target)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CompileError(f"unknown option(s) {', '.join(unknown)} for target '{target}'; its options: "
                           f"{', '.join(known) or 'none'}")


def load(path: str | os.PathLike[str]) -> Any:
    """Load an exported artifact (any target) by its manifest."""
    from ..compiler.errors import ArtifactError
    from ..runtime.artifact import read_manifest

    manifest = read_manifest(path)
    if manifest.target in ("llvm", "cuda"):
        from ..runtime.tvm_model import TVMModel

        return TVMModel.load(path)
    if manifest.target == "hls":
        from ..targets.hls import load_project

        return load_project(path)
    raise ArtifactError(f"{path} was compiled for unknown target '{manifest.target}'")
