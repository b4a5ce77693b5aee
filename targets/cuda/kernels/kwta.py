"""k-WTA kernels of the cuda target: :func:`kwta_global` (radix select over a whole sample, one block per sample)
and :func:`kwta_local` (bisection over the channels at each pixel, one thread per pixel); see the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tvm.script import tirx as T

from ....compiler.errors import CompileError
from ....compiler.ir.layer import Epilogue, Kwta
from ...kernel import Kernel
from .common import (
    GPU,
    NEG_INF,
    THREADS,
    BoostIndex,
    Flavour,
    block_scan,
    block_threads,
    finish,
    float_key,
    fused_stages,
    pooled_dims,
    relu_if,
    sync,
    warp_total,
)


def kwta_global(shape: Sequence[int], kwta: Kwta, epilogue: Epilogue | None = None, name: str = "", *,
                flavour: Flavour = GPU, threads: int | None = None) -> Kernel:
    """k-WTA over each whole sample of shape ``shape``; the ``epilogue``'s ReLU / max-pool applied after it.

    One block of ``threads`` per sample (None: 512 for groups over 4096 units, else 256)."""
    k, ties, boost = kwta.k, kwta.ties, kwta.boost
    relu, pool = fused_stages(epilogue, "kwta_global")
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    if not 1 <= k <= n:
        raise CompileError(f"kwta_global: k={k} outside [1, {n}]")
    if ties not in ("keep", "break"):
        raise CompileError(f"kwta_global: unknown ties mode {ties!r}")
    if pool is not None and (ties != "keep" or len(shape) != 3):
        raise CompileError("kwta_global: a fused max-pool needs ties='keep' and a (C, H, W) group")
    F = flavour
    nt = block_threads(threads or (512 if n > 4096 else THREADS), "kwta_global")
    warps = nt // 32
    log_nt = nt.bit_length() - 1
    steps = -(-n // nt)
    seg = -(-n // nt)
    bidx = BoostIndex(boost, shape)
    nb = bidx.size
    if pool is not None:
        c_, h_, w_ = shape
        oh, ow = pooled_dims(h_, w_, pool)
        out_shape: tuple[int, ...] = (c_, oh, ow)
        kh, kw = pool.kernel
        psh, psw = pool.strides
        ppt, ppl = pool.pads[0], pool.pads[1]
    else:
        out_shape = shape
        c_ = h_ = w_ = oh = ow = kh = kw = psh = psw = ppt = ppl = 1
    n_out = math.prod(out_shape)
    out_steps = -(-n_out // nt)
    keep = ties == "keep"

    def key_at(xf, base, i, boost_buf):
        return float_key(bidx.boosted(xf[base + i], i, boost_buf))

    def himask(p):
        # the key bits already fixed before pass p (none for p = 0; no shift by 32)
        return T.if_then_else(p == 0, T.uint32(0), T.shift_left(T.uint32(0xFFFFFFFF), T.Cast("uint32", 32 - 8 * p)))

    def shift(p):
        return T.Cast("uint32", 24 - 8 * p)

    @T.prim_func
    def kwta(x_handle: T.handle, boost_buf: T.Buffer((nb,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, *shape), "float32")
        Y = T.match_buffer(y_handle, (batch, *out_shape), "float32")
        Xf = T.decl_buffer((batch * n,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * n_out,), "float32", data=Y.data)
        for b_ in F.blocks(batch):
            b = T.meta_var(F.bid(b_, batch))
            hist = T.alloc_buffer((warps * 256,), "int32", scope=F.shared)  # one 256-bin histogram per warp
            suf = T.alloc_buffer((257,), "int32", scope=F.shared)  # suf[d]: keys with digit >= d; suf[256] = 0
            suf_tmp = T.alloc_buffer((256,), "int32", scope=F.shared)
            pick = T.alloc_buffer((2,), "int32", scope=F.shared)  # the digit holding rank krem, keys above it
            pre = T.alloc_buffer((5,), "uint32", scope="local")
            krem = T.alloc_buffer((5,), "int32", scope="local")
            for _tx in F.threads(nt):
                pre[0] = T.uint32(0)
                krem[0] = k
            for p in range(4):
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    for j in range((warps * 256 + nt - 1) // nt):  # every bin of every warp, whatever nt
                        if j * nt + tx < warps * 256:
                            hist[j * nt + tx] = 0
                    if tx == 0:
                        suf[256] = 0
                sync(nt, F)
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    for j in range(steps):
                        if j * nt + tx < n:  # noqa: SIM102 (guards the load below)
                            if T.bitwise_and(key_at(Xf, b * n, j * nt + tx, boost_buf), himask(p)) == pre[p]:
                                F.atomic_add(hist, tx // 32 * 256 + T.Cast("int32", T.bitwise_and(
                                    T.shift_right(key_at(Xf, b * n, j * nt + tx, boost_buf), shift(p)),
                                    T.uint32(255))), T.int32(1))
                sync(nt, F)
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    for j in range((256 + nt - 1) // nt):
                        if j * nt + tx < 256:
                            suf[j * nt + tx] = warp_total(hist, j * nt + tx, warps)
                sync(nt, F)
                for step in range(8):  # suffix sums over the 256 bins (Hillis-Steele)
                    for tx_ in F.threads(nt):
                        tx = T.meta_var(F.tid(tx_, nt))
                        for j in range((256 + nt - 1) // nt):
                            if j * nt + tx < 256:
                                suf_tmp[j * nt + tx] = suf[j * nt + tx] + suf[
                                    T.min(j * nt + tx + T.shift_left(1, step), 256)]
                    sync(nt, F)
                    for tx_ in F.threads(nt):
                        tx = T.meta_var(F.tid(tx_, nt))
                        for j in range((256 + nt - 1) // nt):
                            if j * nt + tx < 256:
                                suf[j * nt + tx] = suf_tmp[j * nt + tx]
                    sync(nt, F)
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    here = T.alloc_buffer((2,), "int32", scope="local")
                    for j in range((256 + nt - 1) // nt):
                        # exactly one digit d has suf[d] >= krem > suf[d + 1] (suf falls from >= k to 0)
                        if j * nt + tx < 256:
                            here[0] = suf[j * nt + tx]
                            here[1] = suf[j * nt + tx + 1]
                            if here[0] >= krem[p] and here[1] < krem[p]:
                                pick[0] = j * nt + tx
                                pick[1] = here[1]
                sync(nt, F)
                for _tx in F.threads(nt):
                    krem[p + 1] = krem[p] - pick[1]
                    pre[p + 1] = T.bitwise_or(pre[p], T.shift_left(T.Cast("uint32", pick[0]), shift(p)))
                sync(nt, F)
            if keep:
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    for j in range(out_steps):
                        if j * nt + tx < n_out:
                            if pool is None:
                                Yf[b * n_out + j * nt + tx] = relu_if(T.if_then_else(
                                    key_at(Xf, b * n, j * nt + tx, boost_buf) < pre[4], T.float32(0),
                                    Xf[b * n + j * nt + tx]), relu)
                            else:
                                best = T.alloc_buffer((1,), "float32", scope="local")
                                best[0] = T.float32(NEG_INF)
                                for wy in range(kh):
                                    for wx in range(kw):
                                        if ((j * nt + tx) % (oh * ow) // ow * psh - ppt + wy >= 0
                                                and (j * nt + tx) % (oh * ow) // ow * psh - ppt + wy < h_
                                                and (j * nt + tx) % ow * psw - ppl + wx >= 0
                                                and (j * nt + tx) % ow * psw - ppl + wx < w_):
                                            best[0] = T.max(best[0], T.if_then_else(
                                                key_at(Xf, b * n, (j * nt + tx) // (oh * ow) * (h_ * w_)
                                                       + ((j * nt + tx) % (oh * ow) // ow * psh - ppt + wy) * w_
                                                       + (j * nt + tx) % ow * psw - ppl + wx, boost_buf) < pre[4],
                                                T.float32(0),
                                                Xf[b * n + (j * nt + tx) // (oh * ow) * (h_ * w_)
                                                   + ((j * nt + tx) % (oh * ow) // ow * psh - ppt + wy) * w_
                                                   + (j * nt + tx) % ow * psw - ppl + wx]))
                                Yf[b * n_out + j * nt + tx] = relu_if(best[0], relu)
            else:
                cnt = T.alloc_buffer((nt,), "int32", scope=F.shared)
                scan = T.alloc_buffer((nt,), "int32", scope=F.shared)
                tmp = T.alloc_buffer((nt,), "int32", scope=F.shared)
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    c = T.alloc_buffer((1,), "int32", scope="local")
                    c[0] = 0
                    for s in range(seg):
                        if tx * seg + s < n:
                            c[0] = c[0] + T.Cast("int32", key_at(Xf, b * n, tx * seg + s, boost_buf) == pre[4])
                    cnt[tx] = c[0]
                    scan[tx] = c[0]
                block_scan(scan, tmp, nt, log_nt, F)
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    seen = T.alloc_buffer((1,), "int32", scope="local")
                    seen[0] = scan[tx] - cnt[tx]
                    for s in range(seg):
                        if tx * seg + s < n:
                            if key_at(Xf, b * n, tx * seg + s, boost_buf) > pre[4]:
                                Yf[b * n + tx * seg + s] = relu_if(Xf[b * n + tx * seg + s], relu)
                            elif key_at(Xf, b * n, tx * seg + s, boost_buf) == pre[4] and seen[0] < krem[4]:
                                Yf[b * n + tx * seg + s] = relu_if(Xf[b * n + tx * seg + s], relu)
                                seen[0] = seen[0] + 1
                            else:
                                Yf[b * n + tx * seg + s] = T.float32(0)

    return finish(kwta, [bidx.array], out_shape, "kwta_global", name)


def kwta_local(shape: Sequence[int], kwta: Kwta, epilogue: Epilogue | None = None, name: str = "", *,
               flavour: Flavour = GPU) -> Kernel:
    """k-WTA over axis 0 (channels) of ``shape`` = (C, *spatial), independently at every spatial position; the
    ``epilogue``'s ReLU applied after it."""
    k, ties, boost = kwta.k, kwta.ties, kwta.boost
    relu, pool = fused_stages(epilogue, "kwta_local")
    if pool is not None:
        raise CompileError("kwta_local: a fused max-pool is not supported")
    shape = tuple(int(d) for d in shape)
    channels, npix = shape[0], math.prod(shape[1:])
    if not 1 <= k <= channels:
        raise CompileError(f"kwta_local: k={k} outside [1, {channels}]")
    if ties not in ("keep", "break"):
        raise CompileError(f"kwta_local: unknown ties mode {ties!r}")
    F = flavour
    nt = THREADS
    n = channels * npix
    bidx = BoostIndex(boost, shape)
    nb = bidx.size
    keep = ties == "keep"

    def key_at(xf, base, c, p, boost_buf):
        return float_key(bidx.boosted(xf[base + c * npix + p], c * npix + p, boost_buf))

    @T.prim_func
    def kwta(x_handle: T.handle, boost_buf: T.Buffer((nb,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, *shape), "float32")
        Y = T.match_buffer(y_handle, (batch, *shape), "float32")
        Xf = T.decl_buffer((batch * n,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * n,), "float32", data=Y.data)
        for blk_ in F.blocks((batch * npix + nt - 1) // nt):
            blk = T.meta_var(F.bid(blk_, (batch * npix + nt - 1) // nt))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                if blk * nt + tx < batch * npix:
                    keys = T.alloc_buffer((channels,), "uint32", scope="local")
                    st = T.alloc_buffer((3,), "uint32", scope="local")  # threshold, count, need
                    for c in range(channels):
                        keys[c] = key_at(Xf, (blk * nt + tx) // npix * n, c, (blk * nt + tx) % npix, boost_buf)
                    st[0] = T.uint32(0)
                    for bit in range(32):
                        st[1] = T.uint32(0)
                        for c in range(channels):
                            st[1] = st[1] + T.Cast("uint32", keys[c] >= T.bitwise_or(
                                st[0], T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit))))
                        if st[1] >= T.uint32(k):
                            st[0] = T.bitwise_or(st[0], T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit)))
                    if keep:
                        for c in range(channels):
                            Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = relu_if(
                                T.if_then_else(keys[c] < st[0], T.float32(0),
                                               Xf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix]),
                                relu)
                    else:
                        st[2] = T.uint32(k)
                        for c in range(channels):
                            st[2] = st[2] - T.Cast("uint32", keys[c] > st[0])
                        for c in range(channels):
                            if keys[c] > st[0] or (keys[c] == st[0] and st[2] > T.uint32(0)):
                                Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = relu_if(
                                    Xf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix], relu)
                                if keys[c] == st[0]:
                                    st[2] = st[2] - T.uint32(1)
                            else:
                                Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = T.float32(0)

    return finish(kwta, [bidx.array], shape, "kwta_local", name)
