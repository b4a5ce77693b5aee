"""Code generation targets: ``llvm`` (CPU via TVM), ``cuda`` (via TVM + nvcc), ``hls`` (Vitis HLS C++)."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..compiler.errors import CompileError

TARGETS = ("llvm", "cuda", "hls")


def get_target(name: str) -> ModuleType:
    """The target module; it provides ``compile(module, *, pipeline, batch, progress, **options)``."""
    if name not in TARGETS:
        raise CompileError(f"unknown target '{name}'; targets: {', '.join(TARGETS)}")
    return importlib.import_module(f"{__name__}.{name}")
