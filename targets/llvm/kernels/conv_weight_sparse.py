"""Weight-sparse conv2d (dense input x fixed-fan-in sparse filters) with the fused layer epilogue.

Layout and loop nest. Every filter o keeps its non-zero taps as lists per block of input channels
(:func:`pack_tap_lists`: ``tap_off`` = offset of tap (c, ky, kx) in the input scratch of its block, ``tap_w``
= its weight, ``tap_ptr[o, cb]`` = start of the list of filter o in channel block cb). The kernel vectorizes
along output x (16 lanes), keeps a register tile of ``rows x chunks`` output vectors of one filter, and for
each tap does one broadcast of the weight and one input load + FMA per tile vector — the inner loop is dense
vector FMAs and its work is ``nnz(W) * Ho * ceil(Wo / 16)`` vector FMAs, i.e. proportional to the weight
density. Channel blocks are sized so that their input planes stay in L1 while all filters sweep them; the
scratch holds one block at a time (each block's input is copied in just before its taps run), and partial
sums of a filter's tile are kept in a small scratch between blocks.

Stride 1 (the fast path): the block's input is copied into ``KW`` zero-padded, pre-shifted planes
``xs[kx, c, y, x] = xpad[c, y, x + kx]`` with rows padded to a multiple of 16 floats, so every input vector
the FMAs read is a 64-byte-aligned load (unaligned zmm loads split cache lines and halve the FMA rate).
Output rows are 16-lane chunks at x0 = 16 i; the last partial chunk is a masked store.

Other strides: a zero-padded copy and strided loads (scalarised by TVM) — correct, not tuned.
The same kernel is the best dense conv for few input channels (e.g. GSC conv1, C=1): pass a dense weight.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import ConvGeometry, Epilogue
from .common import (
    LANES,
    NATIVE_LANES,
    NO_EPILOGUE,
    TILE_VECTORS,
    Kernel,
    ceil_div,
    copy_run,
    for_each_sample,
    fused_epilogue,
    index_dtype,
    isa_scoped,
    make_kernel,
    masked_store,
)
from .epilogue import conv_epilogue, epilogue_boost, epilogue_scratch

#: input bytes per channel block (the block's pre-shifted planes stay in the 48 KiB L1D)
L1_INPUT_BYTES = 32 * 1024


def pack_tap_lists(
    weight: np.ndarray, chan_pitch: int, row_pitch: int, col_pitch: int, channel_block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack the non-zero taps of an OIHW weight as CSR lists per (filter, input-channel block).

    Returns ``ptr`` int32 (O, NCB + 1) (absolute start of each list; list (o, cb) is
    ``ptr[o, cb] : ptr[o, cb + 1]``), ``offsets`` int32 (nnz,) and ``weights`` float32 (nnz,). The offset
    of tap (c, ky, kx) is ``(c % channel_block) * chan_pitch + ky * row_pitch + kx * col_pitch``: its place in
    the scratch that holds the input of one channel block at a time.
    """
    o_ch, i_ch, kh, kw = weight.shape
    ncb = ceil_div(i_ch, channel_block)
    flat = weight.reshape(o_ch, -1)
    c, ky, kx = np.unravel_index(np.arange(i_ch * kh * kw), (i_ch, kh, kw))
    tap_offset = (c % channel_block * chan_pitch + ky * row_pitch + kx * col_pitch).astype(np.int32)
    ptr = np.zeros((o_ch, ncb + 1), np.int32)
    offs: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    pos = 0
    for o in range(o_ch):
        for cb in range(ncb):
            lo, hi = cb * channel_block * kh * kw, min(i_ch, (cb + 1) * channel_block) * kh * kw
            nz = lo + np.nonzero(flat[o, lo:hi])[0]
            ptr[o, cb] = pos
            offs.append(tap_offset[nz])
            vals.append(flat[o, nz])
            pos += nz.size
        ptr[o, ncb] = pos
    off_arr = np.concatenate(offs).astype(np.int32) if pos else np.zeros(1, np.int32)
    w_arr = np.concatenate(vals).astype(np.float32) if pos else np.zeros(1, np.float32)
    return ptr, off_arr, w_arr


#: native-width accumulators of a flat-plane tile per ISA class: x86 FMAs read the input from memory, so all but
#: two of the 16 ymm/xmm registers (the broadcast weight and a spare) accumulate (GSC conv2's 13-vector plane
#: is one tile: 20480 taps x 13 FMAs instead of 2 x 7, 9 % faster on AVX2); NEON loads into registers first,
#: so it keeps a few of its 32 q registers for loads in flight.
FLAT_TILE_VECTORS = {"avx2": 14, "sse2": 14, "neon": 26}

#: per-tap cost of a register tile beyond its FMAs (weight broadcast, offset load, loop), in vector FMAs
TAP_OVERHEAD = 3


def _vector_tile(count: int, max_tile: int) -> int:
    """Vectors per register tile for a flat plane of ``count`` vectors: the fewest FMAs plus per-tap overheads
    over all tiles (a tile of one vector would pay the broadcast and the offset load per FMA)."""
    return min(range(1, min(count, max_tile) + 1), key=lambda r: (ceil_div(count, r) * (r + TAP_OVERHEAD), -r))


def _row_tile(height: int, chunks: int, max_tile: int) -> int:
    """Output rows per register tile (at most ``max_tile`` vectors): least recomputation, then the largest."""
    best = 1
    for rows in range(1, min(height, max(1, max_tile // chunks)) + 1):
        if ceil_div(height, rows) * rows <= ceil_div(height, best) * best:
            best = rows
    return best


@isa_scoped
def conv2d_weight_sparse(
    geometry: ConvGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_EPILOGUE,
    name: str = "conv2d_weight_sparse",
    *,
    isa: str | None = None,
) -> Kernel:
    """Fused conv2d (+bias, +ReLU, +k-WTA, +max-pool) specialised to a sparse OIHW ``weight``.

    Args:
        in_shape: (C, H, W) of one input sample (NCHW activations, batch symbolic).
        weight: (O, C, KH, KW) float32 with real zeros (any sparsity, incl. dense).
        bias: (O,) or None. stride, padding (top, left, bottom, right): as ONNX Conv; groups = 1.
        relu, kwta, pool: the fused epilogue (pool = max-pool kernel = stride, floor).

    Returns a Kernel with params ``(x, tap_ptr, tap_off, tap_w, bias, [boost], y)`` (see
    :func:`pack_tap_lists`; ``boost`` only with k-WTA, layout from :func:`.epilogue.epilogue_boost`).
    ``y`` is (B, O, Ho', Wo') after pooling.
    """
    in_shape, stride, padding = geometry.in_shape, geometry.strides, geometry.pads
    relu, kwta, pool, pool_first = fused_epilogue(epilogue)
    c_in, h_in, w_in = in_shape
    o_ch, c_w, kh, kw = weight.shape
    if c_w != c_in:
        raise ValueError(f"weight has {c_w} input channels, input has {c_in}")
    sh, sw = stride
    pt, pl, pb, pr = padding
    ho = (h_in + pt + pb - kh) // sh + 1
    wo = (w_in + pl + pr - kw) // sw + 1
    lanes = LANES
    shifted = sh == 1 and sw == 1
    hp = h_in + pt + pb
    # flat: rows of the shifted planes `wo` apart, so the output plane is one contiguous run of ho*wo pixels,
    # vectorised in the ISA's native width (no lanes lost to rows narrower than a vector: GSC conv2's 10-wide
    # rows fill 10 of 16 lanes row by row, 100 of 104 flat). Kept off on AVX-512, whose 64-byte loads would
    # straddle cache lines at the unaligned flat offsets.
    flat = shifted and isa != "avx512" and wo % NATIVE_LANES[isa] != 0
    if flat:
        lanes = NATIVE_LANES[isa]
        chunks = 1
        wp = wo
        planes = kw
    elif shifted:
        chunks = ceil_div(wo, lanes)
        wp = chunks * lanes  # row pitch of the shifted planes
        planes = kw  # kx selects the pre-shifted plane
    else:
        chunks = ceil_div(wo, lanes) if wo >= lanes else 1
        wp = max(w_in + pl + pr, (lanes - 1) * sw + kw)
        planes = 1
    total = ho * wo
    out_rows = ceil_div(total, lanes) if flat else ho  # flat: "rows" are the vectors of the flat plane
    chan_bytes = planes * hp * wp * 4
    cblock = max(1, min(c_in, L1_INPUT_BYTES // chan_bytes))
    ncb = ceil_div(c_in, cblock)
    # the scratch holds one channel block at a time (copied in just before its taps run): GSC conv2's 64 x 5
    # pre-shifted planes would take 179 KB of the 512 KB L2 at batch 1, one block takes 31 KB
    col_pitch = cblock * hp * wp if planes > 1 else 1
    tap_ptr, tap_off, tap_w = pack_tap_lists(weight, hp * wp, wp, col_pitch, cblock)
    nnz = tap_off.size
    bias_arr = np.zeros(o_ch, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_ch)
    budget = FLAT_TILE_VECTORS[isa] if flat else TILE_VECTORS[isa] * LANES // lanes  # vectors of this width
    rows = _vector_tile(out_rows, budget) if flat else _row_tile(out_rows, chunks, budget)
    n_tiles = ceil_div(out_rows, rows)
    if flat:
        # tiles never overlap (an overlapped vector would add a channel block's partial sum twice): the last
        # tile runs past the plane, on input slack and with masked stores
        out_rows = n_tiles * rows
    xs_size = planes * cblock * hp * wp + (out_rows * lanes - total if flat else 0)
    tap_off = tap_off.astype(index_dtype(xs_size))  # 16-bit where the scratch allows: half the stream's cache
    n_out = o_ch * ho * wo
    boost_arr, mode = epilogue_boost(kwta, o_ch, (ho // pool) * (wo // pool) if (pool and pool_first) else ho * wo)
    nb = 1 if boost_arr is None else boost_arr.size
    scratch = epilogue_scratch(kwta, pool, n_out, pool_first)
    fused = kwta is not None or pool is not None
    hq, wq = (ho // pool, wo // pool) if pool else (ho, wo)
    n_in = c_in * h_in * w_in
    n_y = o_ch * hq * wq
    partial_size = o_ch * out_rows * chunks * lanes if ncb > 1 else 1

    def chunk_x0(i: int) -> int:
        if shifted or wo < lanes:
            return i * lanes
        return min(i * lanes, wo - lanes)

    def emit_fma(acc, src, off, w, y0) -> None:
        for r in range(rows):
            for i in range(chunks):
                start = off + (y0 + r) * lanes if flat else off + (y0 + r) * sh * wp + chunk_x0(i) * sw
                v = src[T.ramp(start, 1 if shifted else sw, lanes)]
                a = acc[r * chunks + i]
                T.buffer_store(a, a[T.ramp(0, 1, lanes)] + T.broadcast(w, lanes) * v, [T.ramp(0, 1, lanes)])

    def emit_init(acc, b) -> None:
        for a in acc:
            T.buffer_store(a, T.broadcast(b, lanes), [T.ramp(0, 1, lanes)])

    def partial_at(o, y0, r, i):
        return ((o * out_rows + y0 + r) * chunks + i) * lanes

    def emit_load_partial(acc, partial, o, y0) -> None:
        for r in range(rows):
            for i in range(chunks):
                v = partial[T.ramp(partial_at(o, y0, r, i), 1, lanes)]
                T.buffer_store(acc[r * chunks + i], v, [T.ramp(0, 1, lanes)])

    def emit_save_partial(acc, partial, o, y0) -> None:
        for r in range(rows):
            for i in range(chunks):
                v = acc[r * chunks + i][T.ramp(0, 1, lanes)]
                T.buffer_store(partial, v, [T.ramp(partial_at(o, y0, r, i), 1, lanes)])

    def emit_store(acc, dst, o, y0) -> None:
        for r in range(rows):
            for i in range(chunks):
                x0 = chunk_x0(i)
                v = acc[r * chunks + i][T.ramp(0, 1, lanes)]
                if relu:
                    v = T.max(v, T.broadcast(T.float32(0), lanes))
                if not flat:
                    masked_store(dst, o * ho * wo + (y0 + r) * wo + x0, v, min(wo - x0, lanes), lanes)
                elif out_rows * lanes > total:  # the last tile reaches past the plane: store only its pixels
                    last = (n_tiles - 1) * rows + r
                    with T.If(y0 + r == last):
                        with T.Then():
                            if total > last * lanes:
                                masked_store(dst, o * total + last * lanes, v, total - last * lanes, lanes)
                        with T.Else():
                            T.buffer_store(dst, v, [T.ramp(o * total + (y0 + r) * lanes, 1, lanes)])
                else:
                    T.buffer_store(dst, v, [T.ramp(o * total + (y0 + r) * lanes, 1, lanes)])

    def emit_input_copy(xp, xs_, c, cl, yy) -> None:
        """Copy input row (c, yy) into the padded (and, for stride 1, pre-shifted) scratch, as channel ``cl``
        of the block held there."""
        for kx in range(planes):
            shift = kx if shifted else 0
            xd0, xd1 = max(0, pl - shift), min(wp, w_in + pl - shift)
            dst = (kx * cblock * hp + cl * hp + yy + pt) * wp + xd0
            src = (c * h_in + yy) * w_in + xd0 + shift - pl
            copy_run(xp, dst, xs_, src, xd1 - xd0, lanes)

    @T.macro
    def sample(X, Y, ptr_buf, off_buf, w_buf, bias_buf, boost_buf, b):
        """One sample: its own scratch, so samples can run on different threads."""
        xp = T.alloc_buffer((xs_size,), "float32")
        partial = T.alloc_buffer((partial_size,), "float32")
        act = T.alloc_buffer((n_out if fused else 1,), "float32")
        masked = T.alloc_buffer((max(scratch["masked"], 1),), "float32")
        keys = T.alloc_buffer((max(scratch["keys"], 1),), "uint32")
        cand = T.alloc_buffer((max(scratch["cand"], 1),), "uint32")
        hist = T.alloc_buffer((max(scratch["hist"], 1),), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        acc = T.meta_var([T.alloc_buffer((lanes,), "float32") for _ in range(rows * chunks)])
        xs = T.decl_buffer((n_in,), "float32", data=X.data, elem_offset=b * n_in)
        ys = T.decl_buffer((n_y,), "float32", data=Y.data, elem_offset=b * n_y)
        for i0 in range(xs_size // lanes):
            xp[T.ramp(i0 * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
        for i in range(xs_size - xs_size // lanes * lanes):
            xp[xs_size // lanes * lanes + i] = T.float32(0)
        for cb in range(ncb):
            for cl in range(T.min(cblock, c_in - cb * cblock)):
                for yy in range(h_in):
                    emit_input_copy(xp, xs, cb * cblock + cl, cl, yy)
            for o in range(o_ch):
                for tile in range(n_tiles):
                    y0 = T.meta_var(tile * rows if flat else T.min(tile * rows, out_rows - rows))
                    if cb == 0:
                        emit_init(acc, bias_buf[o])
                    else:
                        emit_load_partial(acc, partial, o, y0)
                    for t in range(ptr_buf[o, cb + 1] - ptr_buf[o, cb]):
                        emit_fma(acc, xp, T.Cast("int32", off_buf[ptr_buf[o, cb] + t]), w_buf[ptr_buf[o, cb] + t], y0)
                    if cb < ncb - 1:
                        emit_save_partial(acc, partial, o, y0)
                    elif fused:
                        emit_store(acc, act, o, y0)
                    else:
                        emit_store(acc, ys, o, y0)
        if fused:
            conv_epilogue(
                act, masked, ys, boost_buf, keys, cand, hist, thr, o_ch, ho, wo, kwta, mode, pool, pool_first
            )

    @T.prim_func
    def conv(
        x_handle: T.handle,
        ptr_buf: T.Buffer((o_ch, ncb + 1), "int32"),
        off_buf: T.Buffer((nnz,), str(tap_off.dtype)),
        w_buf: T.Buffer((nnz,), "float32"),
        bias_buf: T.Buffer((o_ch,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, c_in, h_in, w_in), "float32")
        Y = T.match_buffer(y_handle, (batch, o_ch, hq, wq), "float32")
        for_each_sample(batch, sample, X, Y, ptr_buf, off_buf, w_buf, bias_buf, boost_buf)

    return make_kernel(
        conv,
        [tap_ptr, tap_off, tap_w, bias_arr, boost_arr],
        name,
        family="conv2d_weight_sparse",
        dense_macs=o_ch * ho * wo * c_in * kh * kw,
        nonzero_macs=int((weight != 0).sum()) * ho * wo,
        tile=(rows, chunks),
        channel_block=cblock,
    )
