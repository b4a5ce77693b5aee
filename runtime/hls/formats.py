"""The weight storage formats of the HLS kernels (``include/sparsecc/formats.h``), written from numpy.

A weight is viewed as a matrix with one row per output unit and one column per input: ``(O, I)`` for a
linear layer, ``(O, C*KH*KW)`` for a conv2d (OIHW flattened, column ``c*KH*KW + ky*KW + kx``); see
:func:`weight_matrix`. The arrays returned here are exactly the arrays the kernels take, in the same
order, and the config members the generator must emit next to them are the properties named
``fan_in``, ``nnz``, ``n_groups`` and ``pack_size``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir.weights import csc_arrays, ell_arrays

#: Element type of every index array written here (the C++ side accepts any integer type).
INDEX_DTYPE = np.dtype("int32")  # as compiler.ir.weights.csc_arrays / ell_arrays write them


def weight_matrix(weight: np.ndarray) -> np.ndarray:
    """A linear (O, I) or conv (O, C, KH, KW) weight as the (O, columns) matrix the formats store."""
    if weight.ndim < 2:
        raise CompileError(f"a weight must have rank >= 2, got shape {weight.shape}")
    return np.ascontiguousarray(weight.reshape(weight.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class EllWeights:
    """ELL / fixed fan-in: ``idx[O][fan_in]`` columns and ``val[O][fan_in]`` values (zero-padded rows)."""

    idx: np.ndarray
    val: np.ndarray

    @property
    def fan_in(self) -> int:
        """The ``fan_in`` config member."""
        return int(self.idx.shape[1])


@dataclasses.dataclass(frozen=True)
class CscWeights:
    """CSC: ``col_ptr[COLS+1]``, ``row_idx[nnz]``, ``val[nnz]`` (rows ascending within a column)."""

    col_ptr: np.ndarray
    row_idx: np.ndarray
    val: np.ndarray

    @property
    def nnz(self) -> int:
        """The ``nnz`` config member: the stored length (1 for an all-zero weight, one explicit zero)."""
        return int(self.val.shape[0])


@dataclasses.dataclass(frozen=True)
class ComplementaryWeights:
    """Complementary sparsity packing: ``packed_val[G][COLS]``, ``packed_slot[G][COLS]``, ``group_rows[G][P]``.

    The units of a group have pairwise disjoint non-zero columns; ``packed_val`` overlays their weights,
    ``packed_slot`` names the slot (0..P-1) that owns each column (0 where ``packed_val`` is 0) and
    ``group_rows[g][s]`` is the output unit in slot ``s`` of group ``g`` (``O`` for an unused slot).
    """

    packed_val: np.ndarray
    packed_slot: np.ndarray
    group_rows: np.ndarray

    @property
    def n_groups(self) -> int:
        """The ``n_groups`` config member."""
        return int(self.packed_val.shape[0])

    @property
    def pack_size(self) -> int:
        """The ``pack_size`` config member."""
        return int(self.group_rows.shape[1])


def to_ell(matrix: np.ndarray, fan_in: int | None = None) -> EllWeights:
    """ELL arrays of a weight matrix; ``fan_in`` defaults to the largest row non-zero count (at least 1).

    Padding slots hold value 0 and column 0. Non-zeros keep their column order within a row.
    """
    matrix = _as_matrix(matrix)
    widest = int(np.count_nonzero(matrix, axis=1).max()) if matrix.shape[0] else 0
    if fan_in is not None and fan_in < max(widest, 1):
        raise CompileError(f"ELL fan_in {fan_in} is smaller than the widest row ({widest} non-zeros)")
    idx, val = ell_arrays(matrix, fan_in)
    return EllWeights(idx=idx, val=val)


def to_csc(matrix: np.ndarray) -> CscWeights:
    """CSC arrays of a weight matrix (an all-zero matrix stores one explicit zero so arrays are non-empty)."""
    col_ptr, row_idx, val = csc_arrays(_as_matrix(matrix))
    return CscWeights(col_ptr=col_ptr, row_idx=row_idx, val=val)


def pack_complementary(matrix: np.ndarray, pack_size: int,
                       max_groups: int | None = None) -> ComplementaryWeights | None:
    """Greedy first-fit complementary packing into groups of at most ``pack_size`` units.

    Units are placed in order of decreasing non-zero count (ties by index) into the first group with a
    free slot whose occupied columns do not meet theirs; a new group opens when none fits. Returns None as soon
    as more than ``max_groups`` groups would be needed (the packing does not pay).
    """
    matrix = _as_matrix(matrix)
    if pack_size < 1:
        raise CompileError(f"complementary pack_size must be >= 1, got {pack_size}")
    rows, columns = matrix.shape
    support = matrix != 0
    order = sorted(range(rows), key=lambda r: (-int(support[r].sum()), r))
    occupied: list[np.ndarray] = []
    members: list[list[int]] = []
    for row in order:
        for group, used in enumerate(occupied):
            if len(members[group]) < pack_size and not np.any(used & support[row]):
                used |= support[row]
                members[group].append(row)
                break
        else:
            if max_groups is not None and len(members) >= max_groups:
                return None
            occupied.append(support[row].copy())
            members.append([row])
    packed_val = np.zeros((len(members), columns), dtype=matrix.dtype)
    packed_slot = np.zeros((len(members), columns), dtype=INDEX_DTYPE)
    group_rows = np.full((len(members), pack_size), rows, dtype=INDEX_DTYPE)
    for group, units in enumerate(members):
        for slot, row in enumerate(units):
            group_rows[group, slot] = row
            cols = np.flatnonzero(support[row])
            packed_val[group, cols] = matrix[row, cols]
            packed_slot[group, cols] = slot
    return ComplementaryWeights(packed_val=packed_val, packed_slot=packed_slot, group_rows=group_rows)


@dataclasses.dataclass(frozen=True)
class BankedCscWeights:
    """Banked CSC for L lanes: the output rows are split into L banks of O / L consecutive rows; each column is
    a run of *slots*, slot s holding in lane l a non-zero of bank l (or the empty marker O). ``col_ptr[COLS+1]``
    counts slots; ``row_idx[slots * L]`` (the full row, or O) and ``val[slots * L]`` (0 where empty) are laid
    out slot by slot. With L = 1 this is plain CSC."""

    col_ptr: np.ndarray
    row_idx: np.ndarray
    val: np.ndarray
    lanes: int

    @property
    def nnz(self) -> int:
        """The ``nnz`` config member: stored entries (slots x lanes)."""
        return int(self.val.shape[0])

    @property
    def slots(self) -> int:
        return self.nnz // self.lanes


def to_banked_csc(matrix: np.ndarray, lanes: int) -> BankedCscWeights:
    """Banked CSC arrays of a weight matrix for ``lanes`` lanes (which must divide the row count)."""
    matrix = _as_matrix(matrix)
    rows, cols = matrix.shape
    if lanes < 1 or rows % lanes:
        raise CompileError(f"banked CSC: {lanes} lanes do not divide {rows} rows")
    if lanes == 1:
        csc = to_csc(matrix)
        return BankedCscWeights(csc.col_ptr, csc.row_idx, csc.val, 1)
    per_bank = rows // lanes
    col_ptr = np.zeros(cols + 1, dtype=INDEX_DTYPE)
    row_chunks: list[np.ndarray] = []
    val_chunks: list[np.ndarray] = []
    for col in range(cols):
        nonzero = np.flatnonzero(matrix[:, col])
        banks = [nonzero[(nonzero // per_bank) == b] for b in range(lanes)]
        slots = max(len(b) for b in banks)
        rows_block = np.full((slots, lanes), rows, dtype=INDEX_DTYPE)
        vals_block = np.zeros((slots, lanes), dtype=matrix.dtype)
        for b, members in enumerate(banks):
            rows_block[: len(members), b] = members
            vals_block[: len(members), b] = matrix[members, col]
        row_chunks.append(rows_block.reshape(-1))
        val_chunks.append(vals_block.reshape(-1))
        col_ptr[col + 1] = col_ptr[col] + slots
    row_idx = np.concatenate(row_chunks) if row_chunks else np.zeros(0, dtype=INDEX_DTYPE)
    val = np.concatenate(val_chunks) if val_chunks else np.zeros(0, dtype=matrix.dtype)
    if val.size == 0:  # an all-zero weight: one empty slot so that arrays are non-empty
        row_idx = np.full(lanes, rows, dtype=INDEX_DTYPE)
        val = np.zeros(lanes, dtype=matrix.dtype)
    return BankedCscWeights(col_ptr, row_idx, val, lanes)


def _as_matrix(matrix: np.ndarray) -> np.ndarray:
    if matrix.ndim != 2:
        raise CompileError(f"expected a weight matrix (rank 2), got shape {matrix.shape}; see weight_matrix()")
    return matrix
