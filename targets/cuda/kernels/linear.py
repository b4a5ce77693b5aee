"""Linear kernels of the cuda target: :func:`linear_gather` (weight-sparse, one thread per unit over its row's
non-zeros) and :func:`linear_scatter` (sparse-sparse, one block per slice of units over CSC columns).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.errors import CompileError
from ....compiler.ir.layer import Epilogue, LinearGeometry
from ....compiler.ir.weights import csc_arrays, ell_arrays
from ...kernel import Kernel
from .common import (
    GPU,
    THREADS,
    Flavour,
    block_threads,
    fill_zero,
    finish,
    fused_stages,
    relu_if,
    scatter_active,
    scatter_layout,
    summed_copies,
)


def _check_linear(geometry: LinearGeometry, weight: np.ndarray) -> None:
    if geometry.out_features != weight.shape[0] or geometry.in_features not in (None, weight.shape[1]):
        raise CompileError(f"linear geometry {geometry} does not fit a weight of shape {list(weight.shape)}")


def linear_gather(geometry: LinearGeometry, weight: np.ndarray, bias: np.ndarray | None,
                  epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU) -> Kernel:
    """Weight-sparse linear ``x @ W.T + b`` (+ReLU): one thread per (sample, unit) over its row's non-zeros."""
    relu, _ = fused_stages(epilogue, "linear_gather")
    _check_linear(geometry, weight)
    weight = np.asarray(weight, np.float32)
    o_units, i_units = weight.shape
    nnz_rows = (weight != 0).sum(axis=1)
    fan = int(nnz_rows.max()) if o_units else 0
    bias_arr = np.zeros(o_units, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_units)
    F = flavour
    nt = THREADS
    total_nnz = int(nnz_rows.sum())
    if fan * o_units <= 1.25 * max(total_nnz, 1):  # (nearly) fixed fan-in: ELL, transposed for coalescing
        cols, vals = (np.ascontiguousarray(a.T) for a in ell_arrays(weight))
        slots = cols.shape[0]

        @T.prim_func
        def linear(x_handle: T.handle, col_buf: T.Buffer((slots, o_units), "int32"),
                   val_buf: T.Buffer((slots, o_units), "float32"), bias_buf: T.Buffer((o_units,), "float32"),
                   y_handle: T.handle):
            T.func_attr({"tir.noalias": True})
            batch = T.int64()
            X = T.match_buffer(x_handle, (batch, i_units), "float32")
            Y = T.match_buffer(y_handle, (batch, o_units), "float32")
            for blk_ in F.blocks((batch * o_units + nt - 1) // nt):
                blk = T.meta_var(F.bid(blk_, (batch * o_units + nt - 1) // nt))
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    if blk * nt + tx < batch * o_units:
                        acc = T.alloc_buffer((1,), "float32", scope="local")
                        acc[0] = bias_buf[(blk * nt + tx) % o_units]
                        for t in range(slots):
                            acc[0] = acc[0] + val_buf[t, (blk * nt + tx) % o_units] * X[
                                (blk * nt + tx) // o_units, col_buf[t, (blk * nt + tx) % o_units]]
                        Y[(blk * nt + tx) // o_units, (blk * nt + tx) % o_units] = relu_if(acc[0], relu)

        return finish(linear, [cols, vals, bias_arr], (o_units,), "linear_weight_sparse", name)

    rowptr = np.concatenate([[0], np.cumsum(nnz_rows)]).astype(np.int32)
    rr, cc = np.nonzero(weight)
    cols = cc.astype(np.int32) if cc.size else np.zeros(1, np.int32)
    vals = weight[rr, cc].astype(np.float32) if cc.size else np.zeros(1, np.float32)
    nnz = cols.size

    @T.prim_func
    def linear_csr(x_handle: T.handle, ptr_buf: T.Buffer((o_units + 1,), "int32"),
                   col_buf: T.Buffer((nnz,), "int32"), val_buf: T.Buffer((nnz,), "float32"),
                   bias_buf: T.Buffer((o_units,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, i_units), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        for blk_ in F.blocks((batch * o_units + nt - 1) // nt):
            blk = T.meta_var(F.bid(blk_, (batch * o_units + nt - 1) // nt))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                if blk * nt + tx < batch * o_units:
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    acc[0] = bias_buf[(blk * nt + tx) % o_units]
                    for t in range(ptr_buf[(blk * nt + tx) % o_units + 1] - ptr_buf[(blk * nt + tx) % o_units]):
                        acc[0] = acc[0] + val_buf[ptr_buf[(blk * nt + tx) % o_units] + t] * X[
                            (blk * nt + tx) // o_units, col_buf[ptr_buf[(blk * nt + tx) % o_units] + t]]
                    Y[(blk * nt + tx) // o_units, (blk * nt + tx) % o_units] = relu_if(acc[0], relu)

    return finish(linear_csr, [rowptr, cols, vals, bias_arr], (o_units,), "linear_weight_sparse", name)


#: Output units per block of the scatter linear: a few blocks per sample at small batch.
LINEAR_SLICE = 256


def pack_column_slices(weight: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC of each slice of ``units`` output rows of ``weight``: ``ptr`` (slices * (inputs + 1)), row indices
    local to the slice and values (each slice's entries after the previous slice's)."""
    o_units = weight.shape[0]
    ptrs, rows_l, vals_l, pos = [], [], [], 0
    for start in range(0, o_units, units):
        colptr, rows, vals = csc_arrays(weight[start:start + units])
        ptrs.append(colptr + pos)
        rows_l.append(rows)
        vals_l.append(vals.astype(np.float32))
        pos += rows.size
    return (np.concatenate(ptrs).astype(np.int32), np.concatenate(rows_l).astype(np.int32),
            np.concatenate(vals_l))


def linear_scatter(geometry: LinearGeometry, weight: np.ndarray, bias: np.ndarray | None,
                   epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU,
                   kind: str = "linear_sparse_sparse", threads: int = THREADS, lanes: int | None = None
                   ) -> Kernel | None:
    """Sparse-sparse linear: one block per (sample, slice of output units) scatters the sample's active inputs
    over the slice's CSC columns (see :func:`scatter_layout`); None when one unit per accumulator copy does not
    fit in shared memory."""
    relu, _ = fused_stages(epilogue, kind)
    _check_linear(geometry, weight)
    weight = np.asarray(weight, np.float32)
    o_units, i_units = weight.shape
    nt = block_threads(threads, kind)
    lanes, units = scatter_layout(nt, lanes, 1, kind)
    units = min(o_units, units, LINEAR_SLICE)
    if units == 0:
        return None
    slices = -(-o_units // units)
    copies = nt // lanes
    ptr, rows, vals = pack_column_slices(weight, units)
    chunks = max(1, -(-int(np.diff(ptr).max()) // lanes))  # lane strides to cover the longest column slice
    nnz = rows.size
    bias_arr = np.zeros(o_units, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_units)
    F = flavour
    log_nt = nt.bit_length() - 1

    def column_range(ptr_buf, part):
        def entry_range(loc):  # the active input's CSC column within this block's slice
            T.buffer_store(loc, ptr_buf[part * (i_units + 1) + loc[0]], [1])
            T.buffer_store(loc, ptr_buf[part * (i_units + 1) + loc[0] + 1], [2])
        return entry_range

    def column_scatter(acc, row_buf, val_buf):
        def scatter_entry(loc, val, e, copy):  # rows of one column are distinct: no two lanes collide
            index = copy * units + row_buf[loc[1] + e]
            T.buffer_store(acc, acc[index] + val_buf[loc[1] + e] * val[0], [index])
        return scatter_entry

    @T.prim_func
    def linear(x_handle: T.handle, ptr_buf: T.Buffer((slices * (i_units + 1),), "int32"),
               row_buf: T.Buffer((nnz,), "int32"), val_buf: T.Buffer((nnz,), "float32"),
               bias_buf: T.Buffer((o_units,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, i_units), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        Xf = T.decl_buffer((batch * i_units,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * o_units,), "float32", data=Y.data)
        for blk_ in F.blocks(batch * slices):
            blk = T.meta_var(F.bid(blk_, batch * slices))
            acc = T.alloc_buffer((copies * units,), "float32", scope=F.shared)
            fill_zero(acc, copies * units, nt, F)
            scatter_active(Xf, blk // slices * i_units, i_units, nt, log_nt, lanes, chunks, F,
                           column_range(ptr_buf, blk % slices), column_scatter(acc, row_buf, val_buf))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                for j in range((units + nt - 1) // nt):
                    if j * nt + tx < units and blk % slices * units + j * nt + tx < o_units:
                        Yf[blk // slices * o_units + blk % slices * units + j * nt + tx] = relu_if(
                            summed_copies(acc, j * nt + tx, copies, units)
                            + bias_buf[blk % slices * units + j * nt + tx], relu)

    return finish(linear, [ptr, rows, vals, bias_arr], (o_units,), kind, name)
