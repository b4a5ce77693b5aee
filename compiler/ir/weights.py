"""A weight tensor viewed as (output units) x (inputs): its sparsity, and its compressed arrays (CSC, ELL)
in the one layout every target packs from."""

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


def csc_arrays(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC of a (units x inputs) matrix: ``col_ptr`` int32 (inputs + 1,), ``row_idx`` int32 (nnz,) ascending
    within each column, ``val`` (nnz,) in the matrix's dtype. An all-zero matrix stores one explicit zero
    (row 0) so that no array is empty."""
    columns, rows = np.nonzero(matrix.T)  # column-major order: by input, then by output row
    col_ptr = np.zeros(matrix.shape[1] + 1, np.int32)
    np.cumsum(np.bincount(columns, minlength=matrix.shape[1]), out=col_ptr[1:])
    if rows.size == 0:
        return col_ptr, np.zeros(1, np.int32), np.zeros(1, matrix.dtype)
    return col_ptr, rows.astype(np.int32), matrix[rows, columns]


def ell_arrays(matrix: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ELL of a (units x inputs) matrix: ``idx`` int32 and ``val`` (units, width), each row's non-zeros in
    column order, then padding slots (column 0, value 0). ``width`` defaults to the largest row non-zero count
    (at least 1); the caller makes sure that no row has more non-zeros than ``width``."""
    per_row = np.count_nonzero(matrix, axis=1)
    if width is None:
        width = max(int(per_row.max()) if per_row.size else 0, 1)
    idx = np.zeros((matrix.shape[0], width), np.int32)
    val = np.zeros((matrix.shape[0], width), matrix.dtype)
    for row in range(matrix.shape[0]):
        columns = np.flatnonzero(matrix[row])
        idx[row, : columns.size] = columns
        val[row, : columns.size] = matrix[row, columns]
    return idx, val
