"""Imports every built-in pass module so that each registers its pass."""

from . import (  # noqa: F401
    canonicalize,
    compress_weights,
    fuse_kwta,
    recognize_kwta,
    schedule_sparse,
    specialize_batch,
)

#: The default optimisation pipeline of ``sparsecc.compile`` and ``sparsecc opt``.
DEFAULT_PIPELINE = "canonicalize,fuse-kwta,compress-weights{format=auto},schedule-sparse"
