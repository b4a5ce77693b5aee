"""Validation of command-line and API arguments, done before any work is started or any file written."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import SparseccError

#: Largest batch accepted by ``check``, ``run --random`` and ``bench`` (inputs are also bounded in bytes).
MAX_BATCH = 1 << 16
#: Largest total size of generated random inputs for one batch.
MAX_INPUT_BYTES = 1 << 30


def positive_int(value: object, what: str, maximum: int | None = None) -> int:
    """``value`` as an int >= 1 (and <= ``maximum``); else SparseccError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SparseccError(f"{what} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1 or (maximum is not None and value > maximum):
        limit = f" and at most {maximum}" if maximum is not None else ""
        raise SparseccError(f"{what} must be >= 1{limit}, got {value}")
    return int(value)


def positive_int_list(text: str, flag: str, maximum: int) -> list[int]:
    """A comma-separated list of ints in [1, maximum], e.g. ``--batches 1,8``."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise SparseccError(f"{flag} must be a comma-separated list of ints, got '{text}'") from None
    if not values:
        raise SparseccError(f"{flag} is empty")
    return [positive_int(v, flag, maximum) for v in values]


def positive_seconds(value: float, flag: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise SparseccError(f"{flag} must be a positive number of seconds, got {value}")
    return value


def check_input_bytes(shapes: Iterable[tuple[tuple[int | None, ...], np.dtype]], batch: int) -> None:
    """Refuse a batch whose inputs alone would take more than MAX_INPUT_BYTES."""
    total = 0
    for shape, dtype in shapes:
        total += math.prod(batch if d is None else d for d in shape) * np.dtype(dtype).itemsize
    if total > MAX_INPUT_BYTES:
        raise SparseccError(f"batch {batch} needs {total / 2**30:.1f} GiB of inputs (limit "
                            f"{MAX_INPUT_BYTES / 2**30:.0f} GiB); use a smaller batch")
