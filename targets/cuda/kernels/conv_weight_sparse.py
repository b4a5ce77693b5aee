"""Weight-sparse conv2d of the cuda target (:func:`conv2d_gather`): one thread per output element over its
filter's non-zero taps (CSR per filter; padding, stride, dilation, groups), bias and a fused ReLU / max-pool.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.errors import CompileError
from ....compiler.ir.layer import ConvGeometry, Epilogue
from ...kernel import Kernel
from .common import (
    GPU,
    NEG_INF,
    THREADS,
    Flavour,
    finish,
    fused_stages,
    pool_params,
    relu_if,
)


def pack_filter_taps(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the non-zero taps per filter: ``ptr`` (O+1), ``codes`` = c << 16 | ky << 8 | kx, ``vals``."""
    o_ch, c_ch, kh, kw = weight.shape
    if c_ch >= 1 << 15 or kh >= 256 or kw >= 256:
        raise CompileError(f"a filter of shape {list(weight.shape)} is too large for the packed tap codes "
                           f"(fewer than 32768 input channels and 256 taps per side)")
    o, c, ky, kx = np.nonzero(weight)
    codes = (c << 16 | ky << 8 | kx).astype(np.int32)
    vals = weight[o, c, ky, kx].astype(np.float32)
    ptr = np.zeros(o_ch + 1, np.int32)
    np.add.at(ptr, o + 1, 1)
    ptr = np.cumsum(ptr).astype(np.int32)
    if codes.size == 0:
        codes, vals = np.zeros(1, np.int32), np.zeros(1, np.float32)
    return ptr, codes, vals


def conv2d_gather(geometry: ConvGeometry, weight: np.ndarray, bias: np.ndarray | None,
                  epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU) -> Kernel:
    """Weight-sparse conv2d (+bias, ReLU, max-pool): one thread per output, over its filter's non-zero taps."""
    relu, pool = fused_stages(epilogue, "conv2d_gather")
    c_in, h, w = geometry.in_shape
    o_ch, cg, _kh, _kw = geometry.weight_shape
    sh, sw = geometry.strides
    pt, pl = geometry.pads[0], geometry.pads[1]
    dh, dw = geometry.dilations
    og = o_ch // geometry.groups
    oh, ow = geometry.out_hw
    qh, qw, pkh, pkw, psh, psw, ppt, ppl = pool_params(pool, oh, ow)
    m = o_ch * qh * qw
    n_in = c_in * h * w
    ptr, codes, vals = pack_filter_taps(np.asarray(weight, np.float32))
    nnz = codes.size
    bias_arr = np.zeros(o_ch, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_ch)
    F = flavour
    nt = THREADS

    @T.prim_func
    def conv(x_handle: T.handle, ptr_buf: T.Buffer((o_ch + 1,), "int32"), code_buf: T.Buffer((nnz,), "int32"),
             val_buf: T.Buffer((nnz,), "float32"), bias_buf: T.Buffer((o_ch,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, c_in, h, w), "float32")
        Y = T.match_buffer(y_handle, (batch, o_ch, qh, qw), "float32")
        Xf = T.decl_buffer((batch * n_in,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * m,), "float32", data=Y.data)
        for blk_ in F.blocks((batch * m + nt - 1) // nt):
            blk = T.meta_var(F.bid(blk_, (batch * m + nt - 1) // nt))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                if blk * nt + tx < batch * m:
                    acc = T.alloc_buffer((2,), "float32", scope="local")  # conv output, best so far
                    o = T.meta_var((blk * nt + tx) % m // (qh * qw))
                    py = T.meta_var((blk * nt + tx) % (qh * qw) // qw)
                    px = T.meta_var((blk * nt + tx) % qw)
                    base = T.meta_var((blk * nt + tx) // m * n_in + o // og * cg * h * w)
                    acc[1] = T.float32(NEG_INF)
                    for wy in range(pkh):
                        for wx in range(pkw):
                            if (py * psh - ppt + wy >= 0 and py * psh - ppt + wy < oh
                                    and px * psw - ppl + wx >= 0 and px * psw - ppl + wx < ow):
                                acc[0] = bias_buf[o]
                                for t in range(ptr_buf[o + 1] - ptr_buf[o]):
                                    if ((py * psh - ppt + wy) * sh - pt
                                            + T.bitwise_and(T.shift_right(code_buf[ptr_buf[o] + t], 8), 255) * dh >= 0
                                            and (py * psh - ppt + wy) * sh - pt
                                            + T.bitwise_and(T.shift_right(code_buf[ptr_buf[o] + t], 8), 255) * dh < h
                                            and (px * psw - ppl + wx) * sw - pl
                                            + T.bitwise_and(code_buf[ptr_buf[o] + t], 255) * dw >= 0
                                            and (px * psw - ppl + wx) * sw - pl
                                            + T.bitwise_and(code_buf[ptr_buf[o] + t], 255) * dw < w):
                                        acc[0] = acc[0] + val_buf[ptr_buf[o] + t] * Xf[
                                            base + T.shift_right(code_buf[ptr_buf[o] + t], 16) * (h * w)
                                            + ((py * psh - ppt + wy) * sh - pt + T.bitwise_and(
                                                T.shift_right(code_buf[ptr_buf[o] + t], 8), 255) * dh) * w
                                            + (px * psw - ppl + wx) * sw - pl
                                            + T.bitwise_and(code_buf[ptr_buf[o] + t], 255) * dw]
                                acc[1] = T.max(acc[1], acc[0])
                    Yf[blk * nt + tx] = relu_if(acc[1], relu)

    return finish(conv, [ptr, codes, vals, bias_arr], (o_ch, qh, qw), "conv2d_weight_sparse", name)
