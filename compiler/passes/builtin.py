"""Imports every built-in pass module so that each registers its pass."""

from . import (  # noqa: F401
    canonicalize,
    compress_weights,
    fuse_kwta,
    recognize_kwta,
    schedule_sparse,
    specialize_batch,
)

#: The default optimisation pipeline of ``sparsecc opt`` (target-independent cost model).
DEFAULT_PIPELINE = "canonicalize,fuse-kwta,compress-weights{format=auto},schedule-sparse"


def default_pipeline(target: str = "generic") -> str:
    """The default pipeline with the kernel/format cost model of ``target`` (what ``sparsecc.compile`` runs)."""
    if target == "generic":
        return DEFAULT_PIPELINE
    return f"canonicalize,fuse-kwta,compress-weights{{format=auto,target={target}}},schedule-sparse{{target={target}}}"
