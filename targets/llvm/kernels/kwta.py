"""k-winners-take-all kernels (DESIGN §2) and the k-WTA epilogue macros the fused layers reuse.

Semantics, exactly as nupic.torch at inference::

    boosted   = x * boost            # boost per channel (C,) or per unit (N,); absent -> ones
    threshold = k-th largest boosted value of the selection group
    out       = where(boosted < threshold, 0, x)     # ties at the threshold all survive

``break_ties=True``: exactly k survive; among values equal to the threshold the lowest flat index wins.
Selection groups: ``kwta_global`` — the whole sample (N units, or C*H*W of NCHW); ``kwta_local`` — the C
channels at each (h, w). The threshold is found by exact radix selection on order-preserving uint32 keys
(see :mod:`.select`), never by sorting; -0.0 and +0.0 are the same key.

Boost layout ("boost mode") used by the macros: ``"channel"`` — boost[C] with H*W a multiple of 16, so each
16-lane vector of a channel-major group shares one factor; ``"flat"`` — one factor per element (N,), used
for 1-D groups and, expanded at generation time, for channel groups whose H*W is not a multiple of 16;
``"none"`` — no multiply.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import Kwta
from .common import (
    LANES,
    Kernel,
    ceil_div,
    float_key,
    for_each_sample,
    isa_scoped,
    make_kernel,
    mask_count,
    sample_bracket,
    vec,
)
from .select import count_greater, select_bisect, select_sampled, select_small

#: groups with at most this many elements use bitwise bisection (32 vector counting passes)
BISECT_MAX = 2048
#: groups with at least this many elements use the sampled bracket before radix selection
SAMPLED_MIN = 16384
#: sample size of the sampled bracket
SAMPLES = 1024


def boost_constant(boost: np.ndarray | None, channels: int, hw: int) -> tuple[np.ndarray, str]:
    """Pack a boost vector for the k-WTA macros; returns (array, mode).

    ``boost`` is per channel (length ``channels``) or per unit (length ``channels * hw``), or None.
    """
    n = channels * hw
    if boost is None:
        return np.ones(1, np.float32), "none"
    b = np.asarray(boost, np.float32).reshape(-1)
    if b.size == n and (hw == 1 or b.size != channels):
        return b.copy(), "flat"
    if b.size != channels:
        raise ValueError(f"boost has {b.size} factors; expected {channels} (per channel) or {n} (per unit)")
    if hw % LANES == 0:
        return b.copy(), "channel"
    return np.repeat(b, hw).astype(np.float32), "flat"


def boosted_vec(src, i0, boost, hw, mode):
    """Python-level helper: the boosted float vector of elements [i0*16, i0*16+16) of a group."""
    v = vec(src, i0 * LANES)
    if mode == "channel":
        return v * T.broadcast(boost[i0 * LANES // hw], LANES)
    if mode == "flat":
        return v * vec(boost, i0 * LANES)
    return v


def boosted_scalar(src, i, boost, hw, mode):
    """Python-level helper: the boosted value of element i of a group."""
    if mode == "channel":
        return src[i] * boost[i // hw]
    if mode == "flat":
        return src[i] * boost[i]
    return src[i]


@T.macro
def group_keys(src, boost, keys, n, hw, mode):
    """keys[0:n] = float_key(src[0:n] * boost)."""
    for i0 in range(n // LANES):
        keys[T.ramp(i0 * LANES, 1, LANES)] = float_key(boosted_vec(src, i0, boost, hw, mode), LANES)
    for i in range(n - n // LANES * LANES):
        keys[n // LANES * LANES + i] = float_key(boosted_scalar(src, n // LANES * LANES + i, boost, hw, mode))


def value_source(src, boost, hw, mode):
    """(vector_value(i0), scalar_value(i)): the boosted values of a group, computed on the fly."""
    return (
        lambda i0: boosted_vec(src, i0, boost, hw, mode),
        lambda i: boosted_scalar(src, i, boost, hw, mode),
    )


@T.macro
def group_threshold(src, boost, keys, cand, hist, thr, n, hw, k, mode):
    """thr[0] = key of the k-th largest boosted value of src[0:n]."""
    if n < SAMPLED_MIN:
        group_keys(src, boost, keys, n, hw, mode)
    if n <= BISECT_MAX:
        select_bisect(keys, n, k, thr)
    elif n >= SAMPLED_MIN:
        select_sampled(
            value_source(src, boost, hw, mode),
            keys,
            n,
            k,
            SAMPLES,
            sample_bracket(n, k, SAMPLES)[0],
            sample_bracket(n, k, SAMPLES)[1],
            cand,
            hist,
            thr,
        )
    else:
        select_small(keys, n, k, hist, thr)


@T.macro
def group_mask(src, dst, boost, thr, n, hw, mode, strict):
    """dst = where(key(boosted) < thr, 0, src) (``strict``: where(key <= thr, 0, src), i.e. only the
    values strictly above the threshold survive; used before the break-ties fix-up)."""
    tv = T.meta_var(T.broadcast(thr, LANES))
    for i0 in range(n // LANES):
        kv = T.meta_var(float_key(boosted_vec(src, i0, boost, hw, mode), LANES))
        if strict:
            dst[T.ramp(i0 * LANES, 1, LANES)] = T.Select(
                kv > tv, vec(src, i0 * LANES), T.broadcast(T.float32(0), LANES)
            )
        else:
            dst[T.ramp(i0 * LANES, 1, LANES)] = T.Select(
                kv < tv, T.broadcast(T.float32(0), LANES), vec(src, i0 * LANES)
            )
    for i in range(n - n // LANES * LANES):
        ks = T.meta_var(float_key(boosted_scalar(src, n // LANES * LANES + i, boost, hw, mode)))
        if strict:
            dst[n // LANES * LANES + i] = T.Select(ks > thr, src[n // LANES * LANES + i], T.float32(0))
        else:
            dst[n // LANES * LANES + i] = T.Select(ks < thr, T.float32(0), src[n // LANES * LANES + i])


@T.macro
def group_tie_fixup(src, dst, boost, keys, thr, n, hw, k, mode):
    """After a strict mask: let the first (k - #above) elements equal to the threshold (flat order) survive.

    ``keys`` must hold the group's keys (recomputed here)."""
    group_keys(src, boost, keys, n, hw, mode)
    c_gt = T.alloc_buffer((1,), "int32")
    count_greater(keys, n, thr, c_gt)
    need = T.alloc_buffer((1,), "int32")
    need[0] = k - c_gt[0]
    for i0 in range(n // LANES):
        if need[0] > 0 and mask_count(vec(keys, i0 * LANES) == T.broadcast(thr, LANES)) > 0:
            for j in range(LANES):
                if need[0] > 0 and keys[i0 * LANES + j] == thr:
                    dst[i0 * LANES + j] = src[i0 * LANES + j]
                    need[0] = need[0] - 1
    for i in range(n - n // LANES * LANES):
        if need[0] > 0 and keys[n // LANES * LANES + i] == thr:
            dst[n // LANES * LANES + i] = src[n // LANES * LANES + i]
            need[0] = need[0] - 1


@isa_scoped
def kwta_global(
    shape: tuple[int, ...],
    kwta: Kwta,
    name: str = "kwta_global",
) -> Kernel:
    """Global k-WTA over each sample: input (B, *shape) -> output (B, *shape), float32.

    ``shape`` is (N,) (1-D KWinners, ``boost`` per unit) or (C, H, W) (KWinners2d local=False, ``boost`` per
    channel). PrimFunc params: ``(x, [boost], y)``; ``boost`` = ``constants[0]`` (packed by
    :func:`boost_constant`) is present only when a boost is given. Batch is symbolic.
    """
    k, boost, break_ties = kwta.k, kwta.boost, kwta.break_ties
    n = int(np.prod(shape))
    channels = shape[0] if len(shape) == 3 else n
    hw = n // channels
    if not 1 <= k <= n:
        raise ValueError(f"k={k} outside [1, {n}]")
    boost_arr, mode = boost_constant(boost, channels, hw) if len(shape) == 3 else boost_constant(boost, n, 1)
    nb = boost_arr.size
    full_shape = tuple(shape)

    @T.macro
    def sample(X, Y, boost_buf, b):
        """One sample, with its own scratch (samples run on different threads)."""
        keys = T.alloc_buffer((n,), "uint32")
        cand = T.alloc_buffer((n + LANES,), "uint32")
        hist = T.alloc_buffer((2048,), "int32")
        thr = T.alloc_buffer((1,), "uint32")
        xs = T.decl_buffer((n,), "float32", data=X.data, elem_offset=b * n)
        ys = T.decl_buffer((n,), "float32", data=Y.data, elem_offset=b * n)
        group_threshold(xs, boost_buf, keys, cand, hist, thr, n, hw, k, mode)
        group_mask(xs, ys, boost_buf, thr[0], n, hw, mode, break_ties)
        if break_ties:
            group_tie_fixup(xs, ys, boost_buf, keys, thr[0], n, hw, k, mode)

    @T.prim_func
    def kwta(x_handle: T.handle, boost_buf: T.Buffer((nb,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, *full_shape), "float32")
        Y = T.match_buffer(y_handle, (batch, *full_shape), "float32")
        for_each_sample(batch, sample, X, Y, boost_buf)

    consts = [None if mode == "none" else boost_arr]
    return make_kernel(kwta, consts, name, family="kwta_global", group=n, k=k)


@T.macro
def local_kwta(src, dst, boost, channels, hw, k, break_ties):
    """dst = local k-WTA of src (C, hw) over channels at each pixel; src and dst must differ."""
    lanes = T.meta_var(min(LANES, hw))
    keys = T.alloc_buffer((channels * lanes,), "uint32")
    t = T.alloc_buffer((lanes,), "uint32")
    cnt = T.alloc_buffer((lanes,), "int32")
    need = T.alloc_buffer((lanes,), "int32")
    for blk in range(ceil_div(hw, lanes)):
        p0 = T.meta_var(T.min(blk * lanes, hw - lanes))
        for c in range(channels):
            keys[T.ramp(c * lanes, 1, lanes)] = float_key(
                src[T.ramp(c * hw + p0, 1, lanes)] * T.broadcast(boost[c], lanes), lanes
            )
        t[T.ramp(0, 1, lanes)] = T.broadcast(T.uint32(0), lanes)
        for bit in range(32):
            cand_t = T.meta_var(
                T.bitwise_or(
                    t[T.ramp(0, 1, lanes)],
                    T.broadcast(T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit)), lanes),
                )
            )
            cnt[T.ramp(0, 1, lanes)] = T.broadcast(0, lanes)
            for c in range(channels):
                cnt[T.ramp(0, 1, lanes)] = cnt[T.ramp(0, 1, lanes)] + T.Cast(
                    f"int32x{lanes}", keys[T.ramp(c * lanes, 1, lanes)] >= cand_t
                )
            t[T.ramp(0, 1, lanes)] = T.Select(
                cnt[T.ramp(0, 1, lanes)] >= T.broadcast(k, lanes), cand_t, t[T.ramp(0, 1, lanes)]
            )
        if break_ties:
            cnt[T.ramp(0, 1, lanes)] = T.broadcast(0, lanes)
            for c in range(channels):
                cnt[T.ramp(0, 1, lanes)] = cnt[T.ramp(0, 1, lanes)] + T.Cast(
                    f"int32x{lanes}", keys[T.ramp(c * lanes, 1, lanes)] > t[T.ramp(0, 1, lanes)]
                )
            need[T.ramp(0, 1, lanes)] = T.broadcast(k, lanes) - cnt[T.ramp(0, 1, lanes)]
            for c in range(channels):
                eq = T.meta_var(keys[T.ramp(c * lanes, 1, lanes)] == t[T.ramp(0, 1, lanes)])
                keep = T.meta_var(
                    T.bitwise_or(
                        keys[T.ramp(c * lanes, 1, lanes)] > t[T.ramp(0, 1, lanes)],
                        T.bitwise_and(eq, need[T.ramp(0, 1, lanes)] > T.broadcast(0, lanes)),
                    )
                )
                dst[T.ramp(c * hw + p0, 1, lanes)] = T.Select(
                    keep, src[T.ramp(c * hw + p0, 1, lanes)], T.broadcast(T.float32(0), lanes)
                )
                need[T.ramp(0, 1, lanes)] = need[T.ramp(0, 1, lanes)] - T.Cast(f"int32x{lanes}", eq)
        else:
            for c in range(channels):
                dst[T.ramp(c * hw + p0, 1, lanes)] = T.Select(
                    keys[T.ramp(c * lanes, 1, lanes)] < t[T.ramp(0, 1, lanes)],
                    T.broadcast(T.float32(0), lanes),
                    src[T.ramp(c * hw + p0, 1, lanes)],
                )


@isa_scoped
def kwta_local(
    shape: tuple[int, int, int],
    kwta: Kwta,
    name: str = "kwta_local",
) -> Kernel:
    """Local k-WTA (KWinners2d local=True): at each (h, w) keep the k largest of the C boosted channels.

    Input/output (B, C, H, W) float32. PrimFunc params ``(x, boost, y)``, ``boost`` = ``constants[0]``,
    shape (C,) (ones when absent). Vectorized over 16 pixels at a time; per lane the threshold key is found
    by a 32-step bitwise bisection (largest t with #(key >= t) >= k), each step one vector compare-and-count
    over the C channels — exact, no sort, no data-dependent branches. ``break_ties``: per pixel exactly k
    survive, lower channel index first.
    """
    (channels, height, width), k, boost, break_ties = shape, kwta.k, kwta.boost, kwta.break_ties
    hw = height * width
    if not 1 <= k <= channels:
        raise ValueError(f"k={k} outside [1, {channels}]")
    boost_arr = np.ones(channels, np.float32) if boost is None else np.asarray(boost, np.float32).reshape(channels)

    @T.prim_func
    def kwta(x_handle: T.handle, boost_buf: T.Buffer((channels,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, *shape), "float32")
        Y = T.match_buffer(y_handle, (batch, *shape), "float32")
        for b in range(batch):
            xs = T.decl_buffer((channels * hw,), "float32", data=X.data, elem_offset=b * channels * hw)
            ys = T.decl_buffer((channels * hw,), "float32", data=Y.data, elem_offset=b * channels * hw)
            local_kwta(xs, ys, boost_buf, channels, hw, k, break_ties)

    return make_kernel(kwta, [boost_arr], name, family="kwta_local", group=channels, k=k)
