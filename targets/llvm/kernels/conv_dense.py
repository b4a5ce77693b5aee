"""Dense conv2d (direct convolution, output channels vectorized) with the fused layer epilogue.

Layout and loop nest. The weight is packed as ``wp[ob, (c*KH + ky)*KW + kx, lane]`` with ``OB = 16 * OV``
output channels per block (OV = 4 when O is a multiple of 64). Output pixels of the whole batch are one
flat index ``q = b * Ho*Wo + oy*Wo + ox``; a register tile is ``XT`` consecutive pixels x ``OV`` vectors of
16 output channels (6 x 4 = 24 zmm accumulators). For each (c, ky, kx) the kernel loads OV weight vectors
and broadcasts one input value per pixel: XT*OV FMAs per OV + XT loads, the classic GEMM micro-kernel with
implicit im2col. Flattening the batch into the pixel index keeps the tile full (and the weights reused)
for tiny feature maps (VGG's 2x2 and 4x4 layers) as soon as the batch grows. The tile at the end of the
pixel range overlaps the previous one (it starts at Q - XT), so every tile is full; batches whose whole
pixel count is below XT take an exact smaller tile chosen at run time.

Inputs are copied into a zero-padded scratch when the conv pads. Results are stored per lane into the
channel-major output (NCHW) or, when a k-WTA/max-pool epilogue follows, into a per-sample (C, H, W)
scratch that :func:`.epilogue.conv_epilogue` reduces.

For very few input channels (C * KH * KW <= ~64, e.g. GSC conv1) :func:`.conv_weight_sparse.
conv2d_weight_sparse` with the dense weight is faster (its vectors run along x and need no transposing
stores).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import ConvGeometry, Epilogue
from .common import (
    LANES,
    NO_EPILOGUE,
    TILE_VECTORS,
    Kernel,
    ceil_div,
    for_each_sample,
    fused_epilogue,
    isa_scoped,
    kernel_isa,
    make_kernel,
    transpose_square,
)
from .epilogue import conv_epilogue, epilogue_boost, epilogue_scratch

#: pixels per register tile of the 6 x 64 tile
PIXEL_TILE = 6
#: feature maps from this size on use the 16x16 transposed tile (channel strides >= 1 KiB thrash L1 sets)
TRANSPOSE_MIN_PIXELS = 256
#: weights larger than this are streamed from L3/DRAM: use the tile with the most pixels (16)
STREAMED_WEIGHT_BYTES = 1 << 20


#: (OV, XT) of the register tile where the register file is narrow: AVX2's 16 ymm hold 6 pixels x 16 channels
#: (12 accumulators + 2 weight registers + 1 broadcast; 2.2x faster than 3 x 32 on GSC conv2, znver3), SSE2's 16
#: xmm 2 pixels, NEON's 32 q registers 6 pixels
NARROW_TILE = {"avx2": (1, 6), "sse2": (1, 2), "neon": (1, 6)}

#: work (MACs) from which a call spreads its tiles over the thread pool (~40 us on one Zen 5 core)
PARALLEL_MIN_MACS = 4_000_000


def pack_dense_weight(weight: np.ndarray, block: int) -> np.ndarray:
    """OIHW -> (Op / block, C*KH*KW, block), output channels zero-padded to a multiple of ``block``."""
    o_ch = weight.shape[0]
    op = ceil_div(o_ch, block) * block
    flat = np.zeros((op, int(np.prod(weight.shape[1:]))), np.float32)
    flat[:o_ch] = weight.reshape(o_ch, -1)
    return np.ascontiguousarray(flat.reshape(op // block, block, -1).transpose(0, 2, 1))


@isa_scoped
def conv2d_dense(
    geometry: ConvGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_EPILOGUE,
    name: str = "conv2d_dense",
    *,
    isa: str | None = None,
) -> Kernel:
    """Fused dense conv2d (+bias, +ReLU, +k-WTA, +max-pool) for NCHW input (B, C, H, W), batch symbolic.

    Returns a Kernel with params ``(x, wp, bias, [boost], y)``: ``wp`` from :func:`pack_dense_weight`,
    ``bias`` (Op,), ``boost`` only with k-WTA (:func:`.epilogue.epilogue_boost`); y is (B, O, Ho', Wo').
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
    npix = ho * wo
    lanes = LANES
    nvec = ceil_div(o_ch, lanes)
    # 16 pixels x 16 channels per tile, transposed in registers before the NCHW stores: for large feature
    # maps (per-lane stores at a channel stride of >= 1 KiB thrash L1 sets) and for weights too big for L2
    # (the weights are streamed once per pixel tile, so the tile should hold as many pixels as possible).
    weight_bytes = 4 * o_ch * c_in * kh * kw
    isa = kernel_isa(isa)
    budget = TILE_VECTORS[isa]
    # the 16 x 16 transposed tile needs 16 accumulator vectors: only where the registers hold them (AVX-512)
    transposed = budget >= lanes and (npix >= TRANSPOSE_MIN_PIXELS or weight_bytes > STREAMED_WEIGHT_BYTES)
    if transposed:
        ov, xt_full = 1, lanes
    elif isa == "avx512":  # 6 pixels x 64 channels: 24 of the 32 zmm registers
        ov = 4 if nvec % 4 == 0 else (2 if nvec % 2 == 0 else 1)
        xt_full = min(PIXEL_TILE * 4 // ov, 12)
    else:  # narrower register files (AVX2, SSE2, NEON): fewer accumulators, same micro-kernel
        ov, xt_full = NARROW_TILE[isa]
    ob_ch = ov * lanes
    nob = nvec // ov
    wpk = pack_dense_weight(np.asarray(weight, np.float32), ob_ch)
    krows = c_in * kh * kw
    bias_arr = np.zeros(nob * ob_ch, np.float32)
    if bias is not None:
        bias_arr[:o_ch] = np.asarray(bias, np.float32).reshape(o_ch)
    copy_input = any(padding)
    hp, wp_ = h_in + pt + pb, w_in + pl + pr
    in_sample = c_in * hp * wp_ if copy_input else c_in * h_in * w_in
    in_rows = wp_ if copy_input else w_in
    in_plane = hp * wp_ if copy_input else h_in * w_in
    boost_arr, mode = epilogue_boost(kwta, o_ch, (ho // pool) * (wo // pool) if (pool and pool_first) else npix)
    nb = 1 if boost_arr is None else boost_arr.size
    fused = kwta is not None or pool is not None
    n_out = o_ch * npix
    scratch = epilogue_scratch(kwta, pool, n_out, pool_first)
    hq, wq = (ho // pool, wo // pool) if pool else (ho, wo)
    n_y = o_ch * hq * wq
    n_in = c_in * h_in * w_in

    def emit_tile(xt, src, dst, w_buf, bias_buf, q0, ob) -> None:
        """One register tile: pixels q0..q0+xt-1 (flat over batch) x output block ob."""
        acc = [[T.alloc_buffer((lanes,), "float32") for _ in range(ov)] for _ in range(xt)]
        offs = T.alloc_buffer((xt,), "int32")  # input offset of each pixel of the tile
        outs = T.alloc_buffer((xt,), "int32")  # output offset (channel 0) of each pixel
        qb = T.alloc_buffer((1,), "int32")
        T.buffer_store(qb, q0, [0])
        for j in range(xt):
            q = qb[0] + j
            smp, pix = q // npix, q % npix
            T.buffer_store(offs, smp * in_sample + (pix // wo) * sh * in_rows + (pix % wo) * sw, [j])
            T.buffer_store(outs, smp * n_out + pix, [j])
            for v in range(ov):
                T.buffer_store(acc[j][v], bias_buf[T.ramp(ob * ob_ch + v * lanes, 1, lanes)], [T.ramp(0, 1, lanes)])
        with T.serial(0, c_in) as c, T.serial(0, kh) as ky:
            for kx in range(kw):
                row = (c * kh + ky) * kw + kx
                wv = [w_buf[ob, row, T.ramp(v * lanes, 1, lanes)] for v in range(ov)]
                for j in range(xt):
                    a = T.broadcast(src[offs[j] + c * in_plane + ky * in_rows + kx], lanes)
                    for v in range(ov):
                        acc_v = acc[j][v]
                        T.buffer_store(acc_v, acc_v[T.ramp(0, 1, lanes)] + a * wv[v], [T.ramp(0, 1, lanes)])
        if transposed and xt == lanes:
            # vector stores when the 16 pixels lie in one sample, per-lane stores otherwise
            pix0 = qb[0] % npix
            with T.If(pix0 + lanes <= npix):
                with T.Then():
                    rows_t = transpose_square([acc[j][0][T.ramp(0, 1, lanes)] for j in range(lanes)])
                    for lane in range(lanes):
                        o = ob * ob_ch + lane
                        val = rows_t[lane]
                        if relu:
                            val = T.max(val, T.broadcast(T.float32(0), lanes))
                        if lane >= o_ch - (nob - 1) * ob_ch:
                            with T.If(o < o_ch), T.Then():
                                T.buffer_store(dst, val, [T.ramp(outs[0] + o * npix, 1, lanes)])
                        else:
                            T.buffer_store(dst, val, [T.ramp(outs[0] + o * npix, 1, lanes)])
                with T.Else():
                    emit_lane_stores(xt, acc, outs, dst, ob)
        else:
            emit_lane_stores(xt, acc, outs, dst, ob)

    def emit_lane_stores(xt, acc, outs, dst, ob) -> None:
        for j in range(xt):
            for v in range(ov):
                o0 = ob * ob_ch + v * lanes
                with T.serial(0, lanes) as lane:
                    if v * lanes + lanes > o_ch - (nob - 1) * ob_ch:
                        # may hold padded output channels (only in the last block): guard at run time
                        with T.If(o0 + lane < o_ch), T.Then():
                            _store_lane(dst, acc[j][v], lane, outs[j] + (o0 + lane) * npix, relu)
                    else:
                        _store_lane(dst, acc[j][v], lane, outs[j] + (o0 + lane) * npix, relu)

    tile_sizes = sorted({xt_full, *(x for x in (4, 2, 1) if x < xt_full)}, reverse=True)

    def emit_all(src, dst, w_buf, bias_buf, total) -> None:
        """All tiles of all output blocks over ``total`` flat pixels (symbolic): full tiles of the largest
        size that fits, the last one overlapping its predecessor (it rewrites the same values).

        Calls with at least ``PARALLEL_MIN_MACS`` of work spread the tiles over the thread pool; smaller ones
        stay serial, because waking sleeping worker threads costs tens of microseconds."""
        big = total * (o_ch * krows) >= PARALLEL_MIN_MACS
        with T.If(big):
            with T.Then():
                emit_tiles(src, dst, w_buf, bias_buf, total, T.parallel)
            with T.Else():
                emit_tiles(src, dst, w_buf, bias_buf, total, T.serial)

    def emit_tiles(src, dst, w_buf, bias_buf, total, loop) -> None:
        for i, xt in enumerate(tile_sizes):
            upper = tile_sizes[i - 1] if i else None
            cond = total >= xt if upper is None else T.And(total >= xt, total < upper)
            with T.If(cond), T.Then(), loop(0, ceil_div(total, xt) * nob) as t:
                ob = t % nob
                tile = t // nob
                emit_tile(xt, src, dst, w_buf, bias_buf, T.min(tile * xt, total - xt), ob)

    @T.macro
    def epilogue(act, Y, boost_buf, b):
        """k-WTA / pooling of one sample, with its own scratch (samples run on different threads)."""
        masked = T.alloc_buffer((max(scratch["masked"], 1),), "float32")
        keys = T.alloc_buffer((max(scratch["keys"], 1),), "uint32")
        cand = T.alloc_buffer((max(scratch["cand"], 1),), "uint32")
        hist = T.alloc_buffer((max(scratch["hist"], 1),), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        acts = T.decl_buffer((n_out,), "float32", data=act.data, elem_offset=b * n_out)
        ys = T.decl_buffer((n_y,), "float32", data=Y.data, elem_offset=b * n_y)
        conv_epilogue(acts, masked, ys, boost_buf, keys, cand, hist, thr, o_ch, ho, wo, kwta, mode, pool, pool_first)

    @T.prim_func
    def conv(
        x_handle: T.handle,
        w_buf: T.Buffer((nob, krows, ob_ch), "float32"),
        bias_buf: T.Buffer((nob * ob_ch,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, c_in, h_in, w_in), "float32")
        Y = T.match_buffer(y_handle, (batch, o_ch, hq, wq), "float32")
        Xf = T.decl_buffer((batch * n_in,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * n_y,), "float32", data=Y.data)
        xp = T.alloc_buffer((batch * in_sample if copy_input else 1,), "float32")
        act = T.alloc_buffer((batch * n_out if fused else 1,), "float32")
        if copy_input:
            for i in range(batch * in_sample):
                xp[i] = T.float32(0)
            for b in range(batch):
                for c in range(c_in):
                    for yy in range(h_in):
                        for xx in range(w_in):
                            xp[b * in_sample + (c * hp + yy + pt) * wp_ + xx + pl] = Xf[
                                ((b * c_in + c) * h_in + yy) * w_in + xx
                            ]
            if fused:
                emit_all(xp, act, w_buf, bias_buf, batch * npix)
            else:
                emit_all(xp, Yf, w_buf, bias_buf, batch * npix)
        else:
            if fused:
                emit_all(Xf, act, w_buf, bias_buf, batch * npix)
            else:
                emit_all(Xf, Yf, w_buf, bias_buf, batch * npix)
        if fused:
            for_each_sample(batch, epilogue, act, Y, boost_buf)

    return make_kernel(
        conv,
        [wpk, bias_arr, boost_arr],
        name,
        family="conv2d_dense",
        dense_macs=o_ch * npix * krows,
        nonzero_macs=int((weight != 0).sum()) * npix,
        tile=(xt_full, ov),
    )


def _store_lane(dst, acc, lane, index, relu) -> None:
    """Store lane ``lane`` of an accumulator vector at dst[index]."""
    v = acc[lane]
    if relu:
        v = T.max(v, T.float32(0))
    T.buffer_store(dst, v, [index])
