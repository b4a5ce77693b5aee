"""Tensor types with sparsity encodings.

``TensorType(shape, dtype, encoding)``: ``shape`` is a tuple of ints where ``None`` is a dynamic dimension
(printed ``?``; sparsecc uses it for the batch), ``dtype`` one of :data:`DTYPES`, and ``encoding`` says
something about the zeros of the tensor:

* on **constants** (weights) it is a fact or a storage decision, about a weight viewed as a matrix with one
  row per output unit (dim 0) and one column per input (the product of the other dims):

  - :class:`SparseWeights` ``#sparse<density, fan_in>`` — what the frontend measured: the fraction of
    non-zeros and, when every row holds the same number of non-zeros, that number (fixed fan-in);
  - :class:`CSR`, :class:`CSC`, :class:`BSR`, :class:`ELL` — the storage format chosen by the
    ``compress-weights`` pass, each with the measured density;

* on **activations** it is a bound the graph guarantees: :class:`KWTABound` ``#kwta<k, over>`` says each
  selection group (one group per index of the axes *not* in ``over``) holds at most ``k`` non-zeros,
  ties at the k-WTA threshold aside.

All types here are immutable and check themselves on construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .attributes import StructAttr, check, struct_attr

#: IR dtype name -> numpy dtype.
DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("float32"),
    "f64": np.dtype("float64"),
    "f16": np.dtype("float16"),
    "i64": np.dtype("int64"),
    "i32": np.dtype("int32"),
    "i8": np.dtype("int8"),
    "u8": np.dtype("uint8"),
    "i1": np.dtype("bool"),
}
_NUMPY_TO_IR = {v: k for k, v in DTYPES.items()}


def dtype_of_numpy(dtype: Any) -> str:
    """The IR dtype name of a numpy dtype (raises VerificationError for unsupported ones)."""
    name = _NUMPY_TO_IR.get(np.dtype(dtype))
    check(name is not None, f"unsupported element type {np.dtype(dtype)}")
    return name  # type: ignore[return-value]


class Encoding(StructAttr):
    """Base class of tensor encodings."""

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        """Raise VerificationError if this encoding cannot describe a tensor of ``shape``."""


class WeightEncoding(Encoding):
    """An encoding of a constant weight, seen as a (rows = dim 0) x (cols = prod of other dims) matrix."""

    density: float

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        check(len(shape) >= 2, f"#{self.mnemonic} needs a weight of rank >= 2, got rank {len(shape)}")
        check(all(d is not None for d in shape), f"#{self.mnemonic} needs a static shape")

    def _check_density(self) -> None:
        check(0.0 <= self.density <= 1.0, f"#{self.mnemonic}: density {self.density} is not in [0, 1]")


def _check_fan_in(enc: WeightEncoding, fan_in: int | None, shape: tuple[int | None, ...]) -> None:
    if fan_in is not None:
        cols = math.prod(shape[1:])  # type: ignore[arg-type]
        check(0 <= fan_in <= cols, f"#{enc.mnemonic}: fan_in {fan_in} exceeds the {cols} inputs per row")


@struct_attr("sparse")
class SparseWeights(WeightEncoding):
    """Measured weight sparsity, before a storage format is chosen: density and (if fixed) fan-in."""

    density: float
    fan_in: int | None = None

    def __post_init__(self) -> None:
        self._check_density()
        check(self.fan_in is None or self.fan_in >= 0, "#sparse: fan_in must be >= 0")

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        super().check_shape(shape)
        _check_fan_in(self, self.fan_in, shape)


@struct_attr("csr")
class CSR(WeightEncoding):
    """Compressed sparse rows: per output unit, the column indices and values of its non-zeros."""

    density: float

    def __post_init__(self) -> None:
        self._check_density()


@struct_attr("csc")
class CSC(WeightEncoding):
    """Compressed sparse columns: per input, the rows (output units) it feeds and the values."""

    density: float

    def __post_init__(self) -> None:
        self._check_density()


@struct_attr("bsr")
class BSR(WeightEncoding):
    """Block sparse rows with dense ``block_rows`` x ``block_cols`` blocks."""

    block_rows: int
    block_cols: int
    density: float

    def __post_init__(self) -> None:
        check(self.block_rows > 0 and self.block_cols > 0, "#bsr: block sizes must be positive")
        self._check_density()

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        super().check_shape(shape)
        rows, cols = shape[0], math.prod(shape[1:])  # type: ignore[arg-type]
        check(
            rows % self.block_rows == 0 and cols % self.block_cols == 0,
            f"#bsr: {self.block_rows}x{self.block_cols} blocks do not tile a {rows}x{cols} weight",
        )


@struct_attr("ell")
class ELL(WeightEncoding):
    """ELLPACK: every row stores exactly ``fan_in`` (column, value) slots — the fixed fan-in layout."""

    fan_in: int
    density: float

    def __post_init__(self) -> None:
        check(self.fan_in >= 0, "#ell: fan_in must be >= 0")
        self._check_density()

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        super().check_shape(shape)
        _check_fan_in(self, self.fan_in, shape)


@struct_attr("kwta")
class KWTABound(Encoding):
    """At most ``k`` non-zeros in each selection group; the group spans the axes ``over``."""

    k: int
    over: tuple[int, ...]

    def __post_init__(self) -> None:
        check(self.k >= 1, f"#kwta: k must be >= 1, got {self.k}")
        check(len(self.over) >= 1, "#kwta: 'over' names no axis")
        check(list(self.over) == sorted(set(self.over)), f"#kwta: axes {list(self.over)} must be increasing")

    def check_shape(self, shape: tuple[int | None, ...]) -> None:
        rank = len(shape)
        check(all(0 <= a < rank for a in self.over), f"#kwta: axes {list(self.over)} out of range for rank {rank}")
        size = group_size(shape, self.over)
        check(size is None or self.k <= size, f"#kwta: k={self.k} exceeds the group size {size}")

    def density(self, shape: tuple[int | None, ...]) -> float | None:
        """Upper bound of the fraction of non-zeros, or None when the group size is dynamic."""
        size = group_size(shape, self.over)
        return None if not size else min(1.0, self.k / size)


def group_size(shape: Sequence[int | None], axes: Sequence[int]) -> int | None:
    """The number of elements in one selection group over ``axes`` (None if any of them is dynamic)."""
    dims = [d for d in (shape[a] for a in axes) if d is not None]
    return math.prod(dims) if len(dims) == len(axes) else None


@dataclasses.dataclass(frozen=True)
class TensorType:
    """A ranked tensor type: shape (``None`` = dynamic), dtype name and optional encoding."""

    shape: tuple[int | None, ...]
    dtype: str = "f32"
    encoding: Encoding | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        check(all(d is None or d >= 0 for d in self.shape), f"negative dimension in shape {self.shape}")
        check(self.dtype in DTYPES, f"unknown dtype '{self.dtype}' (known: {', '.join(DTYPES)})")
        if self.encoding is not None:
            check(isinstance(self.encoding, Encoding), f"{self.encoding!r} is not a tensor encoding")
            self.encoding.check_shape(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def static_shape(self) -> tuple[int, ...]:
        """The shape of a type without dynamic dimensions (a constant's); VerificationError otherwise."""
        dims = tuple(d for d in self.shape if d is not None)
        check(len(dims) == len(self.shape), f"expected a static shape, got {list(self.shape)}")
        return dims

    def numel(self) -> int | None:
        """Number of elements, or None when a dimension is dynamic."""
        return group_size(self.shape, range(self.rank))

    def with_encoding(self, encoding: Encoding | None) -> TensorType:
        return TensorType(self.shape, self.dtype, encoding)

    def with_shape(self, shape: Sequence[int | None]) -> TensorType:
        return TensorType(tuple(shape), self.dtype, self.encoding)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype, self.encoding)

    def accepts(self, shape: Sequence[int], dtype: Any) -> bool:
        """Whether a concrete array of ``shape`` and numpy ``dtype`` is an instance of this type."""
        if np.dtype(dtype) != self.numpy_dtype or len(shape) != self.rank:
            return False
        return all(d is None or d == s for d, s in zip(self.shape, shape, strict=True))

    def __str__(self) -> str:
        from .printer import format_type

        return format_type(self)
