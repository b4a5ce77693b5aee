"""Sparse-sparse conv2d: k-sparse input x sparse filters, output channels vectorized, fused epilogue.

Per sample, the input is turned into per-pixel lists of its non-zero channels: ``(c, x[c, iy, ix])``
(a transpose to pixel-major order, then one AVX-512 compress of each pixel's channel vector). Then every
output pixel keeps all O output channels in registers (O/16 accumulator vectors, doubled for ILP) and walks
its receptive field: for each tap (ky, kx) and each *active* channel c of input pixel (oy+ky, ox+kx), one
broadcast of the activation and O/16 FMAs with the weight column ``w[:, c, ky, kx]`` (packed contiguous as
``wc[(ky*KW + kx)*C + c, :]``). Work = (active input, tap) pairs x O/16 vector FMAs: proportional to the
activation density, independent of the weight density (zero weights inside a column ride along; random
fixed-fan-in masks leave almost no all-zero 16-lane blocks to skip).

Choose it over :mod:`.conv_weight_sparse` (cost ~ weight density) when the input is sparser than the
weights, e.g. the FPGA-style nets with <= 5 % active inputs. At GSC conv2's ~35 % active inputs and 20 %
weights the weight-sparse kernel is faster (see ``benchmarks/kernels/gsc_layers.py``).

Padding is supported (out-of-range inputs are inactive); stride must be 1.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import ConvGeometry, Epilogue
from .common import (
    LANES,
    NO_EPILOGUE,
    Kernel,
    ceil_div,
    compress_store,
    compress_table_size,
    fill_compress_table,
    fused_epilogue,
    isa_scoped,
    make_kernel,
)
from .epilogue import conv_epilogue, epilogue_boost, epilogue_scratch


def pack_weight_columns(weight: np.ndarray) -> np.ndarray:
    """OIHW -> (KH*KW*C, Op): row (ky*KW + kx)*C + c holds w[:, c, ky, kx], Op = ceil(O/16)*16."""
    o_ch, c_in, kh, kw = weight.shape
    op = ceil_div(o_ch, LANES) * LANES
    cols = np.zeros((kh, kw, c_in, op), np.float32)
    cols[..., :o_ch] = np.asarray(weight, np.float32).transpose(2, 3, 1, 0)
    return cols.reshape(kh * kw * c_in, op)


@isa_scoped
def conv2d_sparse_sparse(
    geometry: ConvGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_EPILOGUE,
    name: str = "conv2d_sparse_sparse",
) -> Kernel:
    """Fused activation-sparse conv2d (stride 1) for NCHW input (B, C, H, W), batch symbolic.

    Params ``(x, wc, bias, [boost], y)``: ``wc`` from :func:`pack_weight_columns`, ``bias`` (Op,),
    ``boost`` only with k-WTA (:func:`.epilogue.epilogue_boost`); y is (B, O, Ho', Wo').
    """
    in_shape, padding = geometry.in_shape, geometry.pads
    relu, kwta, pool, pool_first = fused_epilogue(epilogue)
    c_in, h_in, w_in = in_shape
    o_ch, c_w, kh, kw = weight.shape
    if c_w != c_in:
        raise ValueError(f"weight has {c_w} input channels, input has {c_in}")
    pt, pl, pb, pr = padding
    ho, wo = h_in + pt + pb - kh + 1, w_in + pl + pr - kw + 1
    lanes = LANES
    nvec = ceil_div(o_ch, lanes)
    op = nvec * lanes
    wc = pack_weight_columns(weight)
    bias_arr = np.zeros(op, np.float32)
    if bias is not None:
        bias_arr[:o_ch] = np.asarray(bias, np.float32).reshape(o_ch)
    hw_in = h_in * w_in
    n_in = c_in * hw_in
    cpad = ceil_div(c_in, lanes) * lanes
    npix = ho * wo
    n_out = o_ch * npix
    boost_arr, mode = epilogue_boost(kwta, o_ch, (ho // pool) * (wo // pool) if (pool and pool_first) else npix)
    nb = 1 if boost_arr is None else boost_arr.size
    fused = kwta is not None or pool is not None
    scratch = epilogue_scratch(kwta, pool, n_out, pool_first)
    hq, wq = (ho // pool, wo // pool) if pool else (ho, wo)
    n_y = o_ch * hq * wq

    # accumulators: up to 16 vectors of output channels per pass over the lists; with <= 8 vectors, two sets
    # (even/odd list entries) so that enough independent FMA chains are in flight
    nsets = 2 if nvec <= 8 else 1
    vblock = nvec if nvec <= 8 else 16

    def emit_pixel(dst, w_buf, bias_buf, ent_c, ent_v, cnt, oy, ox) -> None:
        """All O outputs of output pixel (oy, ox), in blocks of up to 16 output vectors."""
        for v0 in range(0, nvec, vblock):
            emit_pixel_block(dst, w_buf, bias_buf, ent_c, ent_v, cnt, oy, ox, v0, min(vblock, nvec - v0))

    def emit_fma(acc, w_buf, ent_c, ent_v, e, base, v0, nv) -> None:
        xv = T.broadcast(ent_v[e], lanes)
        row = base + ent_c[e]
        for v in range(nv):
            wv = w_buf[row, T.ramp((v0 + v) * lanes, 1, lanes)]
            T.buffer_store(acc[v], acc[v][T.ramp(0, 1, lanes)] + xv * wv, [T.ramp(0, 1, lanes)])

    def emit_pixel_block(dst, w_buf, bias_buf, ent_c, ent_v, cnt, oy, ox, v0, nv) -> None:
        acc = [[T.alloc_buffer((lanes,), "float32") for _ in range(nv)] for _ in range(nsets)]
        for v in range(nv):
            T.buffer_store(acc[0][v], bias_buf[T.ramp((v0 + v) * lanes, 1, lanes)], [T.ramp(0, 1, lanes)])
            for h in range(1, nsets):
                T.buffer_store(acc[h][v], T.broadcast(T.float32(0), lanes), [T.ramp(0, 1, lanes)])
        with T.serial(0, kh) as ky, T.serial(0, kw) as kx:
            iy = oy + ky - pt
            ix = ox + kx - pl
            inside = T.And(T.And(iy >= 0, iy < h_in), T.And(ix >= 0, ix < w_in))
            with T.If(inside), T.Then():
                p = iy * w_in + ix
                base = (ky * kw + kx) * c_in
                n = cnt[p]
                if nsets == 2:
                    with T.serial(0, n // 2) as e2:
                        for h in range(2):
                            emit_fma(acc[h], w_buf, ent_c, ent_v, p * cpad + e2 * 2 + h, base, v0, nv)
                    with T.If(n % 2 == 1), T.Then():
                        emit_fma(acc[0], w_buf, ent_c, ent_v, p * cpad + n - 1, base, v0, nv)
                else:
                    with T.serial(0, n) as e:
                        emit_fma(acc[0], w_buf, ent_c, ent_v, p * cpad + e, base, v0, nv)
        for v in range(nv):
            with T.serial(0, lanes) as lane:
                o = (v0 + v) * lanes + lane
                val = acc[0][v][lane]
                for h in range(1, nsets):
                    val = val + acc[h][v][lane]
                if relu:
                    val = T.max(val, T.float32(0))
                if v0 + v == nvec - 1 and o_ch % lanes:
                    with T.If(o < o_ch), T.Then():
                        T.buffer_store(dst, val, [o * npix + oy * wo + ox])
                else:
                    T.buffer_store(dst, val, [o * npix + oy * wo + ox])

    @T.prim_func
    def conv(
        x_handle: T.handle,
        w_buf: T.Buffer((kh * kw * c_in, op), "float32"),
        bias_buf: T.Buffer((op,), "float32"),
        boost_buf: T.Buffer((nb,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, c_in, h_in, w_in), "float32")
        Y = T.match_buffer(y_handle, (batch, o_ch, hq, wq), "float32")
        xt = T.alloc_buffer((hw_in * cpad,), "float32")
        ent_c = T.alloc_buffer((hw_in * cpad + lanes,), "int32")
        ent_v = T.alloc_buffer((hw_in * cpad + lanes,), "float32")
        cnt = T.alloc_buffer((hw_in,), "int32")
        act = T.alloc_buffer((n_out if fused else 1,), "float32")
        masked = T.alloc_buffer((max(scratch["masked"], 1),), "float32")
        keys = T.alloc_buffer((max(scratch["keys"], 1),), "uint32")
        cand = T.alloc_buffer((max(scratch["cand"], 1),), "uint32")
        hist = T.alloc_buffer((max(scratch["hist"], 1),), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        m = T.alloc_buffer((1,), "int32")
        m2 = T.alloc_buffer((1,), "int32")
        table = T.alloc_buffer((compress_table_size(),), "uint8")
        fill_compress_table(table)
        for b in range(batch):
            xs = T.decl_buffer((n_in,), "float32", data=X.data, elem_offset=b * n_in)
            ys = T.decl_buffer((n_y,), "float32", data=Y.data, elem_offset=b * n_y)
            # pixel-major copy (channels padded to a multiple of 16 with zeros)
            for p in range(hw_in):
                for c in range(cpad):
                    xt[p * cpad + c] = T.if_then_else(c < c_in, xs[T.min(c, c_in - 1) * hw_in + p], T.float32(0))
            # per-pixel lists of active channels
            for p in range(hw_in):
                m[0] = p * cpad
                m2[0] = p * cpad
                for cv in range(cpad // lanes):
                    vals = T.meta_var(xt[T.ramp(p * cpad + cv * lanes, 1, lanes)])
                    nz = T.meta_var(vals != T.broadcast(T.float32(0), lanes))
                    compress_store(ent_c, m, T.ramp(cv * lanes, 1, lanes), nz, table, "int32")
                    compress_store(ent_v, m2, vals, nz, table, "float32")
                cnt[p] = m[0] - p * cpad
            for oy in range(ho):
                for ox in range(wo):
                    if fused:
                        emit_pixel(act, w_buf, bias_buf, ent_c, ent_v, cnt, oy, ox)
                    else:
                        emit_pixel(ys, w_buf, bias_buf, ent_c, ent_v, cnt, oy, ox)
            if fused:
                conv_epilogue(
                    act, masked, ys, boost_buf, keys, cand, hist, thr, o_ch, ho, wo, kwta, mode, pool, pool_first
                )

    return make_kernel(
        conv,
        [wc, bias_arr, boost_arr],
        name,
        family="conv2d_sparse_sparse",
        dense_macs=o_ch * npix * c_in * kh * kw,
        nonzero_macs=int((weight != 0).sum()) * npix,
    )
