"""Linear layers ``y = x @ W.T + b`` (W is (O, I)) with the fused epilogue (ReLU, 1-D k-WTA).

* :func:`linear_dense` — dense W packed column-major in 16-lane output blocks (``wt[i, o]``); register tile of
  up to 6 batch rows x 64 outputs; each step broadcasts one input and FMAs one weight vector per output
  block, so a weight vector is read once per 6 rows of the batch.
* :func:`linear_sparse` — sparse W (fixed fan-in or not). Two paths chosen at run time from the batch size:

  - batch < ``SPMM_MIN_BATCH``: per sample, "complementary" permute-FMAs (:func:`pack_permute_blocks`):
    for each block of 16 outputs, a list of entries (x window, 16 weights, 16 in-window columns); each entry
    is one ``vpermps`` of a 16-input window of x plus one FMA, packing up to 16 non-zeros of 16 different
    rows. GSC fc1 (10 % dense): 24.8k entries for 160k non-zeros (~40 % lane use) in 2.1 MB — 2x faster than
    a CSC scatter of the active inputs (which does only the both-non-zero MACs, but one scalar load-FMA-store
    each) and than AVX-512 gathers or expand-loads (slow on Zen 5). Activation sparsity is not exploited:
    after GSC's k-WTA + pool about half of fc1's inputs are non-zero, so no 16-input window is all zero.
  - batch >= ``SPMM_MIN_BATCH``: weight-sparse SpMM vectorized over 64 samples: x is transposed to
    (I, 64) per chunk of samples, and each output row accumulates ``w * xt[j, :]`` over its CSR non-zeros
    (two rows at a time, 8 accumulators). Activation sparsity is not used (the union of active inputs over
    a batch is nearly everything).

The k-WTA epilogue selects over the N = O units of each sample (boost per unit), see :mod:`.kwta`.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import Epilogue, Kwta, LinearGeometry
from ....compiler.ir.weights import csc_arrays
from .common import (
    LANES,
    NO_LINEAR_EPILOGUE,
    Kernel,
    ceil_div,
    for_each_sample,
    fused_epilogue,
    gather_window,
    index_dtype,
    isa_scoped,
    kernel_isa,
    make_kernel,
    mask_count,
    masked_load,
    masked_store,
    vec,
)
from .kwta import boost_constant, group_mask, group_threshold, group_tie_fixup

#: batch sizes from which linear_sparse switches from per-sample scatter to batch-vectorized SpMM
SPMM_MIN_BATCH = 16
#: samples per SpMM chunk (4 zmm per output row)
SPMM_CHUNK = 64


def _epilogue_consts(kwta: Kwta | None, units: int) -> tuple[np.ndarray | None, str]:
    if kwta is None:
        return None, "none"
    if kwta.local:
        raise ValueError("local k-WTA applies to conv layers only")
    return boost_constant(kwta.boost, units, 1)


def _layer_consts(in_features: int, weight: np.ndarray, bias: np.ndarray | None, kwta: Kwta | None,
                  ) -> tuple[int, int, np.ndarray, np.ndarray | None, str, int]:
    """Shared set-up of the linear generators: (O, O padded to 16 lanes, padded bias, boost constant, boost
    mode, boost length) after checking that W is (O, in_features)."""
    o_units, i_w = weight.shape
    if i_w != in_features:
        raise ValueError(f"weight has {i_w} inputs, expected {in_features}")
    op = ceil_div(o_units, LANES) * LANES
    bias_arr = np.zeros(op, np.float32)
    if bias is not None:
        bias_arr[:o_units] = np.asarray(bias, np.float32).reshape(o_units)
    boost_arr, mode = _epilogue_consts(kwta, o_units)
    return o_units, op, bias_arr, boost_arr, mode, 1 if boost_arr is None else boost_arr.size


@T.macro
def linear_epilogue(act, dst, boost, keys, cand, hist, thr, units, relu, kwta, mode):
    """dst[0:units] = kwta?(relu?(act)); act already holds x @ W.T + b of one sample."""
    if relu:
        for i0 in range(units // LANES):
            act[T.ramp(i0 * LANES, 1, LANES)] = T.max(vec(act, i0 * LANES), T.broadcast(T.float32(0), LANES))
        for i in range(units - units // LANES * LANES):
            act[units // LANES * LANES + i] = T.max(act[units // LANES * LANES + i], T.float32(0))
    if kwta is not None:
        group_threshold(act, boost, keys, cand, hist, thr, units, 1, kwta.k, mode)
        group_mask(act, dst, boost, thr[0], units, 1, mode, kwta.break_ties)
        if kwta.break_ties:
            group_tie_fixup(act, dst, boost, keys, thr[0], units, 1, kwta.k, mode)
    else:
        for i0 in range(units // LANES):
            dst[T.ramp(i0 * LANES, 1, LANES)] = vec(act, i0 * LANES)
        for i in range(units - units // LANES * LANES):
            dst[units // LANES * LANES + i] = act[units // LANES * LANES + i]


#: (output vectors, batch rows) of the dense linear's register tile where the register file is narrow
#: (AVX2, 1600 -> 1000 at batch 64 on znver3: 5.5 ms against 8.1 ms with the AVX-512 tile of 4 x 6)
NARROW_LINEAR_TILE = (2, 3)


@isa_scoped
def linear_dense(
    geometry: LinearGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_LINEAR_EPILOGUE,
    name: str = "linear_dense",
    *,
    isa: str | None = None,
) -> Kernel:
    """Dense linear layer (+ReLU, +k-WTA) for input (B, I) -> (B, O), batch symbolic.

    Params ``(x, wt, bias, [boost], y)``: ``wt`` float32 (I, Op) = W.T zero-padded to Op = ceil(O/16)*16,
    ``bias`` (Op,), ``boost`` (O,) only with k-WTA.
    """
    in_features = geometry.in_features
    relu, kwta, _, _ = fused_epilogue(epilogue)
    o_units, op, bias_arr, boost_arr, mode, nb = _layer_consts(in_features, weight, bias, kwta)
    lanes = LANES
    wt = np.zeros((in_features, op), np.float32)
    wt[:, :o_units] = np.asarray(weight, np.float32).T
    nvec = op // lanes
    if kernel_isa(isa) == "avx512":  # 4 x 6 = 24 accumulators: only 32 registers hold them
        ov = min(4, nvec)  # output vectors per register tile
        rows_tile = 6 if ov >= 3 else 12 // ov
    else:  # narrow register files: (output vectors, batch rows) per tile
        ov, rows_tile = NARROW_LINEAR_TILE
        ov = min(ov, nvec)
    glob = kwta is not None
    scratch_n = op if (glob or relu) else 1

    full_vecs = o_units // lanes
    nfull = full_vecs // ov  # blocks of ov complete output vectors (a TIR loop)
    tail_vecs = nvec - nfull * ov  # the rest, unrolled in Python (incl. a partial last vector)

    def emit(rows, x_buf, b0, y_dst, bias_buf, wt_buf) -> None:
        """Register tiles of ``rows`` batch rows from b0, for every block of output vectors."""
        if nfull > 0:
            with T.serial(0, nfull) as blk:
                emit_block(rows, x_buf, b0, y_dst, blk * ov, ov, bias_buf, wt_buf)
        if tail_vecs > 0:
            emit_block(rows, x_buf, b0, y_dst, nfull * ov, tail_vecs, bias_buf, wt_buf)

    def emit_block(rows, x_buf, b0, y_dst, v0, nv, bias_buf, wt_buf) -> None:
        """acc[rows][nv] = bias + x[b0:b0+rows] @ wt[:, 16*v0 : 16*(v0+nv)], stored through y_dst."""
        acc = [[T.alloc_buffer((lanes,), "float32") for _ in range(nv)] for _ in range(rows)]
        for r in range(rows):
            for v in range(nv):
                T.buffer_store(acc[r][v], vec(bias_buf, (v0 + v) * lanes), [T.ramp(0, 1, lanes)])
        with T.serial(0, in_features) as i:
            for r in range(rows):
                xv = T.broadcast(x_buf[b0 + r, i], lanes)
                for v in range(nv):
                    a = acc[r][v]
                    w = wt_buf[i, T.ramp((v0 + v) * lanes, 1, lanes)]
                    T.buffer_store(a, a[T.ramp(0, 1, lanes)] + xv * w, [T.ramp(0, 1, lanes)])
        for r in range(rows):
            for v in range(nv):
                o0 = (v0 + v) * lanes
                valid = lanes if not isinstance(v0, int) else min(lanes, o_units - o0)
                y_dst(b0 + r, o0, acc[r][v][T.ramp(0, 1, lanes)], valid)

    def emit_small_batch(x_buf, y_dst, bias_buf, wt_buf, batch) -> None:
        """batch < rows_tile: one exact tile (weights streamed once), chosen at run time."""
        for rows in range(1, rows_tile):
            with T.If(batch == rows), T.Then():
                emit(rows, x_buf, 0, y_dst, bias_buf, wt_buf)

    @T.prim_func
    def linear(
        x_handle: T.handle,
        wt_buf: T.Buffer((in_features, op), "float32"),
        bias_buf: T.Buffer((op,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, in_features), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        Yf = T.decl_buffer((batch * o_units,), "float32", data=Y.data)
        act = T.alloc_buffer((batch * scratch_n,), "float32")
        keys = T.alloc_buffer((op if glob else 1,), "uint32")
        cand = T.alloc_buffer((op + LANES if glob else 1,), "uint32")
        hist = T.alloc_buffer((2048 if glob else 1,), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        if batch >= rows_tile:
            for bt in range(ceil_div(batch, rows_tile)):
                emit(
                    rows_tile,
                    X,
                    T.min(bt * rows_tile, batch - rows_tile),
                    _dst(Yf, o_units, act, scratch_n),
                    bias_buf,
                    wt_buf,
                )
        else:
            emit_small_batch(X, _dst(Yf, o_units, act, scratch_n), bias_buf, wt_buf, batch)
        if scratch_n > 1:
            for b in range(batch):
                acts = T.decl_buffer((op,), "float32", data=act.data, elem_offset=b * op)
                ys = T.decl_buffer((o_units,), "float32", data=Y.data, elem_offset=b * o_units)
                linear_epilogue(acts, ys, boost_buf, keys, cand, hist, thr, o_units, relu, kwta, mode)

    return make_kernel(
        linear,
        [wt, bias_arr, boost_arr],
        name,
        family="linear_dense",
        dense_macs=o_units * in_features,
        nonzero_macs=int((weight != 0).sum()),
        tile=(ov, rows_tile),
    )


def _dst(yflat, o_units: int, act, scratch_n: int):
    """Store function for a finished output vector: straight to y, or to the epilogue scratch."""

    def store(row, o0, value, valid) -> None:
        if scratch_n > 1:
            T.buffer_store(act, value, [T.ramp(row * scratch_n + o0, 1, LANES)])
        else:
            masked_store(yflat, row * o_units + o0, value, valid)

    return store


def pack_permute_blocks(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Complementary packing of a sparse W (O, I) for 16-lane FMAs (the per-sample path of linear_sparse).

    Rows are taken in blocks of 16 (one output vector), inputs in windows of 16 (one x vector). Within a
    (block, window) sub-matrix each lane (row) has a short list of non-zeros; entry t of the block holds, in
    every lane, that row's t-th non-zero of the window: its value and its column inside the window. One entry
    therefore costs one ``vpermps`` of the x window (gathering each lane's input) and one FMA, and packs
    up to 16 non-zeros of 16 different rows that need different inputs — the non-zero patterns of the rows
    are overlaid without collisions, Numenta's complementary sparsity on SIMD lanes.

    Returns ``blkptr`` int32 (nblocks + 1,) (entries of block b are ``blkptr[b] : blkptr[b+1]``),
    ``win`` int32 (E,) (first input of the entry's window), ``vals`` float32 (E, 16) and ``idx`` int8 (E, 16).
    """
    o_units, in_features = weight.shape
    nblk = ceil_div(o_units, LANES)
    nwin = ceil_div(in_features, LANES)
    wp = np.zeros((nblk * LANES, nwin * LANES), np.float32)
    wp[:o_units, :in_features] = weight
    ptr, win, vals, idx = [0], [], [], []
    for b in range(nblk):
        for w in range(nwin):
            sub = wp[b * LANES : (b + 1) * LANES, w * LANES : (w + 1) * LANES]
            lists = [np.nonzero(sub[r])[0] for r in range(LANES)]
            for t in range(max(len(lst) for lst in lists)):
                v = np.zeros(LANES, np.float32)
                ix = np.zeros(LANES, np.int8)
                for r, lst in enumerate(lists):
                    if t < len(lst):
                        v[r] = sub[r, lst[t]]
                        ix[r] = lst[t]
                win.append(w * LANES)
                vals.append(v)
                idx.append(ix)
        ptr.append(len(win))
    if not win:
        win, vals, idx = [0], [np.zeros(LANES, np.float32)], [np.zeros(LANES, np.int8)]
    return np.array(ptr, np.int32), np.array(win, np.int32), np.stack(vals), np.stack(idx)


def pack_row_pairs(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of W (O, I) for the SpMM path, rows taken in pairs with a common (padded) length.

    Returns ``pairptr`` int32 (ceil(O/2) + 1,), ``cols`` int32 (2, L) and ``vals`` float32 (2, L): pair p's
    entries are ``[pairptr[p], pairptr[p+1])`` of both rows (row 2p in [0], row 2p+1 in [1]); padding
    entries have value 0 and column 0. An odd last row pairs with an all-padding row.
    """
    o_units, _ = weight.shape
    npairs = ceil_div(o_units, 2)
    cols_l: list[list[np.ndarray]] = [[], []]
    vals_l: list[list[np.ndarray]] = [[], []]
    ptr = [0]
    for p in range(npairs):
        nzs = []
        for h in range(2):
            o = 2 * p + h
            nzs.append(np.nonzero(weight[o])[0] if o < o_units else np.zeros(0, np.int64))
        length = max(n.size for n in nzs)
        for h in range(2):
            o = 2 * p + h
            c = np.zeros(length, np.int32)
            v = np.zeros(length, np.float32)
            c[: nzs[h].size] = nzs[h]
            if o < o_units:
                v[: nzs[h].size] = weight[o, nzs[h]]
            cols_l[h].append(c)
            vals_l[h].append(v)
        ptr.append(ptr[-1] + length)
    total = max(ptr[-1], 1)
    cols = np.zeros((2, total), np.int32)
    vals = np.zeros((2, total), np.float32)
    for h in range(2):
        if ptr[-1]:
            cols[h, : ptr[-1]] = np.concatenate(cols_l[h])
            vals[h, : ptr[-1]] = np.concatenate(vals_l[h])
    return np.array(ptr, np.int32), cols, vals


def _emit_spmm_pair(xt, act_buf, p, bias_buf, pairptr_buf, pcols_buf, pvals_buf, o_units: int) -> None:
    """Two output rows (2p, 2p+1) for the current chunk of samples: 2 x (SPMM_CHUNK / 16) accumulators."""
    chunk, lanes = SPMM_CHUNK, LANES
    cv = chunk // lanes
    acc = [[T.alloc_buffer((lanes,), "float32") for _ in range(cv)] for _ in range(2)]
    for h in range(2):
        o = T.min(2 * p + h, o_units - 1)
        for v in range(cv):
            T.buffer_store(acc[h][v], T.broadcast(bias_buf[o], lanes), [T.ramp(0, 1, lanes)])
    p0 = pairptr_buf[p]
    with T.serial(0, pairptr_buf[p + 1] - p0) as t:
        for h in range(2):
            w = T.broadcast(pvals_buf[h, p0 + t], lanes)
            col = pcols_buf[h, p0 + t]
            for v in range(cv):
                a = acc[h][v]
                xv = xt[T.ramp(col * chunk + v * lanes, 1, lanes)]
                T.buffer_store(a, a[T.ramp(0, 1, lanes)] + w * xv, [T.ramp(0, 1, lanes)])
    for h in range(2):
        for v in range(cv):
            T.buffer_store(
                act_buf, acc[h][v][T.ramp(0, 1, lanes)], [T.ramp((2 * p + h) * chunk + v * lanes, 1, lanes)]
            )


@T.macro
def spmm(X, Y, batch, act, keys, cand, hist, thr, pairptr_buf, pcols_buf, pvals_buf, bias_buf, boost_buf,
         n_in, o_units, npairs, relu, kwta, mode):
    """The large-batch path of the sparse linear kernels: weight-sparse SpMM vectorised over SPMM_CHUNK
    samples (x transposed per chunk, paired CSR rows of :func:`pack_row_pairs`), then the epilogue per sample."""
    xt = T.alloc_buffer((n_in * SPMM_CHUNK,), "float32")
    yt = T.alloc_buffer((ceil_div(o_units, 2) * 2 * SPMM_CHUNK,), "float32")
    for bc in range(ceil_div(batch, SPMM_CHUNK)):
        # transpose the chunk of samples: xt[i, s] = x[bc*64 + s, i] (zeros past the batch)
        for i in range(n_in):
            for s in range(SPMM_CHUNK):
                xt[i * SPMM_CHUNK + s] = T.if_then_else(
                    bc * SPMM_CHUNK + s < batch, X[T.min(bc * SPMM_CHUNK + s, batch - 1), i], T.float32(0)
                )
        for p in range(npairs):
            _emit_spmm_pair(xt, yt, p, bias_buf, pairptr_buf, pcols_buf, pvals_buf, o_units)
        for s in range(T.min(SPMM_CHUNK, batch - bc * SPMM_CHUNK)):
            for o in range(o_units):
                act[o] = yt[o * SPMM_CHUNK + s]
            ys = T.decl_buffer((o_units,), "float32", data=Y.data, elem_offset=(bc * SPMM_CHUNK + s) * o_units)
            linear_epilogue(act, ys, boost_buf, keys, cand, hist, thr, o_units, relu, kwta, mode)


@isa_scoped
def linear_sparse(
    geometry: LinearGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_LINEAR_EPILOGUE,
    name: str = "linear_sparse",
    *,
    isa: str | None = None,
) -> Kernel:
    """Sparse(-sparse) linear layer (+ReLU, +k-WTA) for input (B, I) -> (B, O), batch symbolic.

    Params ``(x, blkptr, win, vals, idx, pairptr, pcols, pvals, bias, [boost], y)``: the permute packing
    (:func:`pack_permute_blocks`) for the per-sample path, the paired CSR (:func:`pack_row_pairs`) for the
    SpMM path, ``bias`` (O,), ``boost`` (O,) only with k-WTA. Both paths compute the same sums (different
    summation order, so results agree to float rounding).
    """
    in_features = geometry.in_features
    relu, kwta, _, _ = fused_epilogue(epilogue)
    o_units, _, bias_arr, boost_arr, mode, nb = _layer_consts(in_features, weight, bias, kwta)
    weight = np.asarray(weight, np.float32)
    isa = kernel_isa(isa)
    blkptr, ent_win, ent_val, ent_idx = pack_permute_blocks(weight)
    pairptr, pcols, pvals = pack_row_pairs(weight)
    nent, plen, npairs = ent_win.size, pcols.shape[1], pairptr.size - 1
    nblk = blkptr.size - 1
    lanes = LANES
    glob = kwta is not None
    n_in = in_features
    ipad = ceil_div(n_in, lanes) * lanes

    def emit_permute_entry(acc, xpad, e, win_buf, val_buf, idx_buf) -> None:
        ix = T.Cast(f"int32x{lanes}", idx_buf[e, T.ramp(0, 1, lanes)])
        gathered = gather_window(xpad, win_buf[e], ix, isa, lanes)
        T.buffer_store(
            acc, acc[T.ramp(0, 1, lanes)] + gathered * val_buf[e, T.ramp(0, 1, lanes)], [T.ramp(0, 1, lanes)]
        )

    def emit_permute_block(xpad, act_buf, blk, bias_buf, blkptr_buf, win_buf, val_buf, idx_buf) -> None:
        """Outputs 16*blk .. 16*blk+15 of one sample: its entries alternate between two accumulators."""
        acc = [T.alloc_buffer((lanes,), "float32") for _ in range(2)]
        o0 = blk * lanes
        T.buffer_store(acc[0], bias_buf[T.ramp(o0, 1, lanes)], [T.ramp(0, 1, lanes)])
        T.buffer_store(acc[1], T.broadcast(T.float32(0), lanes), [T.ramp(0, 1, lanes)])
        e0 = blkptr_buf[blk]
        count = blkptr_buf[blk + 1] - e0
        with T.serial(0, count // 2) as e2:
            for h in range(2):
                emit_permute_entry(acc[h], xpad, e0 + e2 * 2 + h, win_buf, val_buf, idx_buf)
        with T.If(count % 2 == 1), T.Then():
            emit_permute_entry(acc[0], xpad, e0 + count - 1, win_buf, val_buf, idx_buf)
        T.buffer_store(act_buf, acc[0][T.ramp(0, 1, lanes)] + acc[1][T.ramp(0, 1, lanes)], [T.ramp(o0, 1, lanes)])

    @T.prim_func
    def linear(
        x_handle: T.handle,
        blkptr_buf: T.Buffer((nblk + 1,), "int32"),
        win_buf: T.Buffer((nent,), "int32"),
        val_buf: T.Buffer((nent, lanes), "float32"),
        idx_buf: T.Buffer((nent, lanes), "int8"),
        pairptr_buf: T.Buffer((npairs + 1,), "int32"),
        pcols_buf: T.Buffer((2, plen), "int32"),
        pvals_buf: T.Buffer((2, plen), "float32"),
        bias_buf: T.Buffer((bias_arr.size,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, n_in), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        act = T.alloc_buffer((nblk * lanes,), "float32")
        xpad = T.alloc_buffer((ipad,), "float32")
        keys = T.alloc_buffer((o_units if glob else 1,), "uint32")
        cand = T.alloc_buffer((o_units + LANES if glob else 1,), "uint32")
        hist = T.alloc_buffer((2048 if glob else 1,), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        if batch < SPMM_MIN_BATCH:
            for b in range(batch):
                xs = T.decl_buffer((n_in,), "float32", data=X.data, elem_offset=b * n_in)
                ys = T.decl_buffer((o_units,), "float32", data=Y.data, elem_offset=b * o_units)
                for i0 in range(n_in // lanes):
                    xpad[T.ramp(i0 * lanes, 1, lanes)] = vec(xs, i0 * lanes)
                if n_in % lanes != 0:
                    xpad[T.ramp(n_in // lanes * lanes, 1, lanes)] = masked_load(xs, n_in // lanes * lanes, n_in % lanes)
                for blk in range(nblk):
                    emit_permute_block(xpad, act, blk, bias_buf, blkptr_buf, win_buf, val_buf, idx_buf)
                linear_epilogue(act, ys, boost_buf, keys, cand, hist, thr, o_units, relu, kwta, mode)
        else:
            spmm(X, Y, batch, act, keys, cand, hist, thr, pairptr_buf, pcols_buf, pvals_buf, bias_buf, boost_buf,
                 n_in, o_units, npairs, relu, kwta, mode)

    return make_kernel(
        linear,
        [blkptr, ent_win, ent_val, ent_idx, pairptr, pcols, pvals, bias_arr, boost_arr],
        name,
        family="linear_sparse",
        dense_macs=o_units * in_features,
        nonzero_macs=int((weight != 0).sum()),
    )


@isa_scoped
def linear_scatter(
    geometry: LinearGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_LINEAR_EPILOGUE,
    name: str = "linear_scatter",
) -> Kernel:
    """Sparse-sparse linear layer (+ReLU, +k-WTA): only (non-zero input) x (non-zero weight) MACs.

    Per sample, the input is scanned 16 at a time (one vector compare; all-zero windows are skipped) and each
    non-zero input is scattered over the non-zeros of its CSC column into an accumulator initialised with the
    bias. One scalar load-FMA-store per MAC, so it pays when few inputs are active (the cost model's llvm
    profile uses it up to the profile's ``linear_scatter_max`` input density): on the FPGA-style GSC net's fc1
    (6400 -> 1500, 5 % weights, <= 5 % active inputs) it does ~24k MACs instead of streaming 480k non-zeros.

    From ``SPMM_MIN_BATCH`` samples on, the batch is dense enough to vectorise across samples: the kernel then
    runs the weight-sparse SpMM of :func:`linear_sparse` (every sample's 16-lane vectors share each weight).

    Params ``(x, colptr, rows, vals, pairptr, pcols, pvals, bias, [boost], y)``: CSC of W as
    :func:`~sparsecc.compiler.ir.weights.csc_arrays` (one explicit zero when W is all zero), the paired CSR of
    :func:`pack_row_pairs`, ``bias`` (Op,), ``boost`` (O,) only with k-WTA.
    """
    in_features = geometry.in_features
    relu, kwta, _, _ = fused_epilogue(epilogue)
    o_units, op, bias_arr, boost_arr, mode, nb = _layer_consts(in_features, weight, bias, kwta)
    colptr, rows, vals = csc_arrays(np.asarray(weight, np.float32))
    rows = rows.astype(index_dtype(op))
    pairptr, pcols, pvals = pack_row_pairs(np.asarray(weight, np.float32))
    nnz, plen, npairs = rows.size, pcols.shape[1], pairptr.size - 1
    glob = kwta is not None
    windows = in_features // LANES
    tail = in_features - windows * LANES

    @T.macro
    def scatter(X, b, i, colptr_buf, rows_buf, vals_buf, acc, xv, span):
        """acc += X[b, i] * column i. The input and the column bounds are read once into registers (allocas):
        read from the parameter buffers inside the loop, LLVM reloads them after every store to acc."""
        xv[0] = X[b, i]
        if xv[0] != T.float32(0):
            span[0] = colptr_buf[i]
            span[1] = colptr_buf[i + 1]
            for p in T.serial(span[0], span[1]):
                r = T.Cast("int32", rows_buf[p])
                acc[r] = acc[r] + xv[0] * vals_buf[p]

    @T.macro
    def sample(X, Y, colptr_buf, rows_buf, vals_buf, bias_buf, boost_buf, b):
        """One sample, with its own scratch (samples run on different threads)."""
        acc = T.alloc_buffer((op,), "float32")
        keys = T.alloc_buffer((op if glob else 1,), "uint32")
        cand = T.alloc_buffer((op + LANES if glob else 1,), "uint32")
        hist = T.alloc_buffer((2048 if glob else 1,), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        xv = T.alloc_buffer((1,), "float32")
        span = T.alloc_buffer((2,), "int32")
        for i0 in range(op // LANES):
            acc[T.ramp(i0 * LANES, 1, LANES)] = vec(bias_buf, i0 * LANES)
        for w in range(windows):
            if mask_count(X[b, T.ramp(w * LANES, 1, LANES)] != T.broadcast(T.float32(0), LANES)) > 0:
                for j in range(LANES):
                    scatter(X, b, w * LANES + j, colptr_buf, rows_buf, vals_buf, acc, xv, span)
        for j in range(tail):
            scatter(X, b, windows * LANES + j, colptr_buf, rows_buf, vals_buf, acc, xv, span)
        ys = T.decl_buffer((o_units,), "float32", data=Y.data, elem_offset=b * o_units)
        linear_epilogue(acc, ys, boost_buf, keys, cand, hist, thr, o_units, relu, kwta, mode)

    @T.prim_func
    def linear(
        x_handle: T.handle,
        colptr_buf: T.Buffer((in_features + 1,), "int32"),
        rows_buf: T.Buffer((nnz,), str(rows.dtype)),
        vals_buf: T.Buffer((nnz,), "float32"),
        pairptr_buf: T.Buffer((npairs + 1,), "int32"),
        pcols_buf: T.Buffer((2, plen), "int32"),
        pvals_buf: T.Buffer((2, plen), "float32"),
        bias_buf: T.Buffer((op,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, in_features), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        if batch < SPMM_MIN_BATCH:
            for_each_sample(batch, sample, X, Y, colptr_buf, rows_buf, vals_buf, bias_buf, boost_buf)
        else:
            act = T.alloc_buffer((op,), "float32")
            keys = T.alloc_buffer((op if glob else 1,), "uint32")
            cand = T.alloc_buffer((op + LANES if glob else 1,), "uint32")
            hist = T.alloc_buffer((2048 if glob else 1,), "int32")
            thr = T.alloc_buffer((1,), "uint32")
            spmm(X, Y, batch, act, keys, cand, hist, thr, pairptr_buf, pcols_buf, pvals_buf, bias_buf, boost_buf,
                 in_features, o_units, npairs, relu, kwta, mode)

    return make_kernel(
        linear,
        [colptr, rows, vals, pairptr, pcols, pvals, bias_arr, boost_arr],
        name,
        family="linear_scatter",
        dense_macs=o_units * in_features,
        nonzero_macs=int((weight != 0).sum()),
    )
