"""Validating the inputs given to a model (the interpreter and every compiled model share this)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .ir.core import Module

#: One input of a signature: name, shape (``None`` = the dynamic batch) and numpy dtype.
InputSpec = tuple[str, tuple[int | None, ...], np.dtype]


def check_feeds(signature: Sequence[InputSpec], feeds: Mapping[str, Any]) -> list[np.ndarray]:
    """Check names, types, dtypes and shapes (and that dynamic batches agree); returns the arrays in
    signature order, C-contiguous. Raises one-line :class:`InputError`s naming the input.

    Runs on every call of a compiled model (a few microseconds matter at batch 1): the common case, the
    exact names with well-formed arrays, is checked with plain comparisons; messages are built only on errors."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"inputs must be a dict of name -> numpy array, got {type(feeds).__name__}")
    if len(feeds) != len(signature) or any(name not in feeds for name, _, _ in signature):
        names = [name for name, _, _ in signature]
        unknown = sorted(set(feeds) - set(names))
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; the model takes {names}")
        missing = [n for n in names if n not in feeds]
        raise InputError(f"missing input(s) {missing}; the model takes {names}")
    arrays = []
    batch = None
    for name, shape, dtype in signature:
        array = feeds[name]
        if not isinstance(array, np.ndarray):
            raise InputError(f"input '{name}' must be a numpy array, got {type(array).__name__}")
        if array.dtype != dtype:
            raise InputError(f"input '{name}' has dtype {array.dtype}, expected {dtype}")
        got = array.shape
        if got != shape and (len(got) != len(shape)
                             or any(d is not None and d != n for d, n in zip(shape, got, strict=True))):
            want = ["?" if d is None else d for d in shape]
            raise InputError(f"input '{name}' has shape {list(got)}, expected {want}")
        if shape and shape[0] is None:
            if got[0] == 0:
                raise InputError(f"input '{name}' has an empty batch")
            if batch is not None and got[0] != batch:
                raise InputError(f"inputs disagree on the batch size ({batch} vs {got[0]})")
            batch = got[0]
        arrays.append(np.ascontiguousarray(array))
    return arrays


def random_inputs(module: Module, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs (ints in [0, 10)) for every argument, batch on dynamic axis 0."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in module.func.args:
        shape = tuple(batch if d is None else d for d in arg.type.shape)
        dtype = arg.type.numpy_dtype
        if dtype.kind == "f":
            feeds[arg.name or ""] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name or ""] = rng.random(shape) < 0.5
        else:
            feeds[arg.name or ""] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


#: The IEEE special values of :func:`special_value_inputs`, one kind per sample (the last sample mixes them).
SPECIAL_VALUES = {"+inf": np.inf, "-inf": -np.inf, "NaN": np.nan, "-0.0": -0.0, "denormal": 1e-40}


def special_value_inputs(module: Module, seed: int, per_sample: int = 2) -> tuple[dict[str, np.ndarray], list[str]]:
    """Seeded standard-normal float inputs with IEEE special values at random positions: sample i holds
    ``per_sample`` copies of the i-th kind of :data:`SPECIAL_VALUES` (``+inf``, ``-inf``, NaN, ``-0.0``, a
    denormal), the last sample one each of inf, -inf and NaN. Returns the feeds and each sample's kind."""
    kinds = [*SPECIAL_VALUES, "inf, -inf, NaN"]
    feeds = random_inputs(module, len(kinds), seed)
    rng = np.random.default_rng(seed + 7919)
    for array in feeds.values():
        if array.dtype.kind != "f":
            continue
        for sample, kind in enumerate(kinds):
            flat = array[sample].reshape(-1)
            values = [SPECIAL_VALUES[kind]] * per_sample if kind in SPECIAL_VALUES else [np.inf, -np.inf, np.nan]
            flat[rng.choice(flat.size, size=min(len(values), flat.size), replace=False)] = values[: flat.size]
    return feeds, kinds
