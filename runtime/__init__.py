"""Loading and running compiled artifacts (TVM runtime for llvm/cuda; C-simulation for hls)."""

from __future__ import annotations

from .artifact import CompiledModel, Manifest, read_manifest

__all__ = ["CompiledModel", "Manifest", "read_manifest"]
