"""Sparse-sparse (and activation-sparse) conv2d of the cuda target (:func:`conv2d_scatter`): one block per
(sample, group of output channels) scatters the sample's active inputs over per-channel tap lists into per-warp
accumulator copies, summed in warp order (see the package docstring).
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ....compiler.errors import CompileError
from ....compiler.ir.layer import ConvGeometry, Epilogue
from ...kernel import Kernel
from .common import (
    GPU,
    NEG_INF,
    THREADS,
    Flavour,
    block_threads,
    fill_zero,
    finish,
    fused_stages,
    pool_params,
    relu_if,
    scatter_active,
    scatter_layout,
    summed_copies,
)


def pack_channel_taps(weight: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per (output-channel group g, input channel c) the non-zero taps: ``ptr`` (G*(C+1)), codes
    ``o_local << 16 | ky << 8 | kx``, ``vals``; and the longest list."""
    o_ch, c_ch, kh, kw = weight.shape
    if group_size >= 1 << 15 or kh >= 256 or kw >= 256:
        raise CompileError(f"a filter of shape {list(weight.shape)} is too large for the packed tap codes "
                           f"(fewer than 32768 output channels per block and 256 taps per side)")
    groups = -(-o_ch // group_size)
    ptr = np.zeros(groups * (c_ch + 1), np.int32)
    codes_l, vals_l = [], []
    pos, longest = 0, 0
    for g in range(groups):
        block = weight[g * group_size:(g + 1) * group_size]
        for c in range(c_ch):
            ol, ky, kx = np.nonzero(block[:, c])
            ptr[g * (c_ch + 1) + c] = pos
            codes_l.append((ol << 16 | ky << 8 | kx).astype(np.int32))
            vals_l.append(block[ol, c, ky, kx].astype(np.float32))
            pos += ol.size
            longest = max(longest, ol.size)
        ptr[g * (c_ch + 1) + c_ch] = pos
    codes = np.concatenate(codes_l) if pos else np.zeros(1, np.int32)
    vals = np.concatenate(vals_l) if pos else np.zeros(1, np.float32)
    return ptr, codes, vals, longest


def conv2d_scatter(geometry: ConvGeometry, weight: np.ndarray, bias: np.ndarray | None,
                   epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU,
                   kind: str = "conv2d_sparse_sparse", threads: int = THREADS, lanes: int | None = None
                   ) -> Kernel | None:
    """Sparse-sparse conv2d: scatter the active inputs over compressed weights (see module docstring).

    One block per (sample, group of output channels); ``threads`` per block, ``lanes`` per active input (see
    :func:`scatter_layout`). None when it does not apply (grouped convolution, or one output channel's map
    exceeds shared memory)."""
    relu, pool = fused_stages(epilogue, kind)
    if geometry.groups != 1:
        return None
    c_in, h, w = geometry.in_shape
    o_ch, _, _kh, _kw = geometry.weight_shape
    sh, sw = geometry.strides
    pt, pl = geometry.pads[0], geometry.pads[1]
    dh, dw = geometry.dilations
    oh, ow = geometry.out_hw
    nt = block_threads(threads, kind)
    weight = np.asarray(weight, np.float32)
    lanes, og = scatter_layout(nt, lanes, oh * ow, kind)
    og = min(o_ch, og)
    if og == 0:
        return None
    groups = -(-o_ch // og)
    copies = nt // lanes
    qh, qw, pkh, pkw, psh, psw, ppt, ppl = pool_params(pool, oh, ow)
    ptr, codes, vals, longest = pack_channel_taps(weight, og)
    chunks = max(1, -(-longest // lanes))  # lane strides to cover the longest tap list
    nnz = codes.size
    bias_arr = np.zeros(o_ch, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_ch)
    F = flavour
    log_nt = nt.bit_length() - 1
    n_in = c_in * h * w
    tile = og * oh * ow
    n_out_block = og * qh * qw
    m = o_ch * qh * qw
    strided = sh != 1 or sw != 1

    def channel_taps(ptr_buf, group):
        def entry_range(loc):  # the taps of the active input's channel for this block's output channels
            T.buffer_store(loc, ptr_buf[group * (c_in + 1) + loc[0] // (h * w)], [1])
            T.buffer_store(loc, ptr_buf[group * (c_in + 1) + loc[0] // (h * w) + 1], [2])
        return entry_range

    def tap_scatter(acc, code_buf, val_buf):
        def scatter_entry(loc, val, e, copy):
            _scatter_tap(acc, copy * tile, code_buf, val_buf, loc, val, e, h, w, oh, ow, sh, sw, pt, pl, dh, dw,
                         strided)
        return scatter_entry

    @T.prim_func
    def conv(x_handle: T.handle, ptr_buf: T.Buffer((groups * (c_in + 1),), "int32"),
             code_buf: T.Buffer((nnz,), "int32"), val_buf: T.Buffer((nnz,), "float32"),
             bias_buf: T.Buffer((o_ch,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, c_in, h, w), "float32")
        Y = T.match_buffer(y_handle, (batch, o_ch, qh, qw), "float32")
        Xf = T.decl_buffer((batch * n_in,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * m,), "float32", data=Y.data)
        for blk_ in F.blocks(batch * groups):
            blk = T.meta_var(F.bid(blk_, batch * groups))
            acc = T.alloc_buffer((copies * tile,), "float32", scope=F.shared)
            fill_zero(acc, copies * tile, nt, F)
            scatter_active(Xf, blk // groups * n_in, n_in, nt, log_nt, lanes, chunks, F,
                           channel_taps(ptr_buf, blk % groups), tap_scatter(acc, code_buf, val_buf))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                for j in range((n_out_block + nt - 1) // nt):
                    if j * nt + tx < n_out_block and blk % groups * og + (j * nt + tx) // (qh * qw) < o_ch:
                        best = T.alloc_buffer((1,), "float32", scope="local")
                        best[0] = T.float32(NEG_INF)
                        for wy in range(pkh):
                            for wx in range(pkw):
                                if ((j * nt + tx) % (qh * qw) // qw * psh - ppt + wy >= 0
                                        and (j * nt + tx) % (qh * qw) // qw * psh - ppt + wy < oh
                                        and (j * nt + tx) % qw * psw - ppl + wx >= 0
                                        and (j * nt + tx) % qw * psw - ppl + wx < ow):
                                    best[0] = T.max(best[0], summed_copies(
                                        acc, (j * nt + tx) // (qh * qw) * (oh * ow)
                                        + ((j * nt + tx) % (qh * qw) // qw * psh - ppt + wy) * ow
                                        + (j * nt + tx) % qw * psw - ppl + wx, copies, tile))
                        Yf[blk // groups * m + (blk % groups * og) * (qh * qw) + j * nt + tx] = relu_if(
                            best[0] + bias_buf[blk % groups * og + (j * nt + tx) // (qh * qw)], relu)

    return finish(conv, [ptr, codes, vals, bias_arr], (o_ch, qh, qw), kind, name)


def _scatter_tap(acc, offset, code_buf, val_buf, loc, val, entry, h, w, oh, ow, sh, sw, pt, pl, dh, dw, strided):
    """Emit: add tap ``loc[1] + entry`` of the active input ``loc[0]`` (value ``val[0]``) into ``acc[offset:]``
    (a plain add: this thread owns that float in this phase)."""
    code = code_buf[loc[1] + entry]
    ny = loc[0] % (h * w) // w + pt - T.bitwise_and(T.shift_right(code, 8), 255) * dh
    nx = loc[0] % w + pl - T.bitwise_and(code, 255) * dw
    if strided:
        valid = tirx.all(ny >= 0, nx >= 0, ny % sh == 0, nx % sw == 0, ny // sh < oh, nx // sw < ow)
    else:
        valid = tirx.all(ny >= 0, nx >= 0, ny < oh, nx < ow)
    index = offset + T.shift_right(code, 16) * (oh * ow) + ny // sh * ow + nx // sw
    with T.If(valid), T.Then():
        T.buffer_store(acc, acc[index] + val_buf[loc[1] + entry] * val[0], [index])
