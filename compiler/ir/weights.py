"""Measuring the sparsity of a weight tensor viewed as (output units) x (inputs)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """Density (non-zeros / size), per-row non-zero counts summary and fixed fan-in (None if rows differ)."""

    density: float
    nnz: int
    size: int
    rows: int
    cols: int
    fan_in: int | None
    max_row_nnz: int


def as_matrix(weight: np.ndarray) -> np.ndarray:
    """A weight of rank >= 2 as a (dim 0) x (product of the other dims) matrix."""
    return weight.reshape(weight.shape[0], -1)


def measure_weight_sparsity(weight: np.ndarray) -> WeightSparsity:
    if weight.ndim < 2:
        nnz = int(np.count_nonzero(weight))
        return WeightSparsity(nnz / max(weight.size, 1), nnz, weight.size, 1, weight.size, None, nnz)
    matrix = as_matrix(weight)
    per_row = np.count_nonzero(matrix, axis=1)
    nnz = int(per_row.sum())
    size = int(matrix.size)
    fixed = int(per_row[0]) if per_row.size and np.all(per_row == per_row[0]) else None
    return WeightSparsity(
        density=nnz / size if size else 1.0,
        nnz=nnz,
        size=size,
        rows=int(matrix.shape[0]),
        cols=int(matrix.shape[1]),
        fan_in=fixed,
        max_row_nnz=int(per_row.max()) if per_row.size else 0,
    )
