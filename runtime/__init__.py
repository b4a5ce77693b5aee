"""Loading and running compiled artifacts (TVM runtime for llvm/cuda; C-simulation for hls)."""

from __future__ import annotations

import os
from typing import Any

from ..compiler.errors import ArtifactError
from .artifact import CompiledModel, Manifest, read_manifest


def load_artifact(path: str | os.PathLike[str]) -> Any:
    """Load any sparsecc artifact directory by its manifest's target."""
    manifest = read_manifest(path)
    if manifest.target in ("llvm", "cuda"):
        from .tvm_model import TVMModel

        return TVMModel.load(path)
    if manifest.target == "hls":
        from ..targets.hls import load_project

        return load_project(path)
    raise ArtifactError(f"{path} was compiled for unknown target '{manifest.target}'")


__all__ = ["CompiledModel", "Manifest", "load_artifact", "read_manifest"]
