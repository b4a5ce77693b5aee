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


def default_pipeline(target: str = "generic", profile: str | None = None) -> str:
    """The default pipeline with the kernel/format cost model of ``target`` (what ``sparsecc.compile`` runs);
    ``profile``: the kernel profile to plan with (a built-in name or a calibrated .json; default: the target's)."""
    if target == "generic":
        return DEFAULT_PIPELINE
    options = f"target={target}" + (f",profile={profile}" if profile else "")
    return f"canonicalize,fuse-kwta,compress-weights{{format=auto,{options}}},schedule-sparse{{{options}}}"
