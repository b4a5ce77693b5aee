"""The fused layer epilogue shared by the conv kernels: k-WTA (global or local) and max-pool.

A fused conv kernel computes, per sample, ``act = relu?(conv(x) + bias)`` into a channel-major scratch
``S`` (C, H, W) and then calls :func:`conv_epilogue`, which writes the layer output:

* k-WTA global: threshold over all C*H*W boosted values (see :mod:`.kwta`), mask;
* k-WTA local: per-pixel threshold over the C channels (16 pixels per vector, bitwise bisection);
* max-pool (kernel = stride = ``pool``, floor), after the k-WTA mask.

Without k-WTA and pooling the conv kernels store straight into the output and skip the epilogue.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from ....compiler.ir.layer import Kwta
from .common import LANES, ceil_div, key_value, masked_store, strided_vec
from .kwta import boost_constant, group_mask, group_threshold, group_tie_fixup, local_kwta


def pooled_row(src, dst, c, qy, q0, height, width, pool, lanes, mask=None) -> None:
    """Emit: one vector of pooled outputs (lanes wide) of row qy of channel c.

    ``mask = (boost, thr, mode)`` (``thr`` a float) applies the global k-WTA mask to every input before the max (fused
    k-WTA + pool: the masked activations are never written)."""
    hq, wq = height // pool, width // pool
    val = None
    for dy in range(pool):
        row = c * height * width + (qy * pool + dy) * width + q0 * pool
        for dx in range(pool):
            v = strided_vec(src, row + dx, pool, lanes)
            if mask is not None:
                v = _apply_mask(v, mask, c, row + dx, pool, lanes)
            val = v if val is None else T.max(val, v)
    index = c * hq * wq + qy * wq + q0
    T.buffer_store(dst, val, [index if lanes == 1 else T.ramp(index, 1, lanes)])


def _apply_mask(v, mask, c, start, pool, lanes):
    """where(v * boost < thr, 0, v) for a (strided) vector of one channel; ``thr`` is the threshold's float value
    (:func:`~.common.key_value`): a float compare orders as the keys do (-0.0 == +0.0) without forming them, and
    a NaN threshold (k or more NaN in the group) keeps every unit, as the interpreter does."""
    boost, thr, mode = mask
    if mode == "channel":
        boosted = v * (boost[c] if lanes == 1 else T.broadcast(boost[c], lanes))
    elif mode == "flat":
        boosted = v * strided_vec(boost, start, pool, lanes)
    else:
        boosted = v
    if lanes == 1:
        return T.Select(boosted < thr, T.float32(0), v)
    return T.Select(boosted < T.broadcast(thr, lanes), T.broadcast(T.float32(0), lanes), v)


@T.macro
def maxpool(src, dst, channels, height, width, pool, mask):
    """dst (C, H//pool, W//pool) = max-pool of src (C, H, W), kernel = stride = pool, floor mode.

    ``mask = (boost, thr, mode)``: max-pool of where(src * boost < thr, 0, src) (``thr`` a float) — the fused
    global k-WTA mask + max-pool (see :func:`pooled_row`); None for a plain max-pool."""
    hq = T.meta_var(height // pool)
    wq = T.meta_var(width // pool)
    lanes = T.meta_var(min(LANES, wq))
    for c in range(channels):
        for qy in range(hq):
            for chunk in range(ceil_div(wq, lanes)):
                q0 = T.meta_var(T.min(chunk * lanes, wq - lanes))
                pooled_row(src, dst, c, qy, q0, height, width, pool, lanes, mask)


def epilogue_boost(kwta: Kwta | None, channels: int, hw: int) -> tuple[np.ndarray | None, str]:
    """The boost constant a fused conv kernel passes to :func:`conv_epilogue` (None without k-WTA)."""
    if kwta is None:
        return None, "none"
    if kwta.local:
        b = np.ones(channels, np.float32) if kwta.boost is None else np.asarray(kwta.boost, np.float32)
        return b.reshape(channels).copy(), "local"
    return boost_constant(kwta.boost, channels, hw)


def epilogue_scratch(kwta: Kwta | None, pool: int | None, n: int, pool_first: bool = False) -> dict[str, int]:
    """Sizes (elements) of the scratch buffers :func:`conv_epilogue` needs; 0 = not needed. ``n`` is the
    pre-pool activation count of one sample."""
    glob = kwta is not None and not kwta.local
    if kwta is not None and pool and pool_first:
        return {"keys": n, "cand": n + LANES, "hist": 2048 if glob else 0, "masked": n}
    return {
        "keys": n if glob else 0,
        "cand": n + LANES if glob else 0,
        "hist": 2048 if glob else 0,
        "masked": n if (kwta is not None and pool and (kwta.local or kwta.break_ties)) else 0,
    }


@T.macro
def kwta_into(src, dst, boost, keys, cand, hist, thr, channels, height, width, kwta, mode):
    """dst = k-WTA(src) for one (C, H, W) sample."""
    if kwta.local:
        local_kwta(src, dst, boost, channels, height * width, kwta.k, kwta.break_ties)
    else:
        group_threshold(src, boost, keys, cand, hist, thr, channels * height * width, height * width, kwta.k, mode)
        group_mask(src, dst, boost, thr[0], channels * height * width, height * width, mode, kwta.break_ties)
        if kwta.break_ties:
            group_tie_fixup(src, dst, boost, keys, thr[0], channels * height * width, height * width, kwta.k, mode)


@T.macro
def conv_epilogue(
    src, masked, dst, boost, keys, cand, hist, thr, channels, height, width, kwta, mode, pool, pool_first
):
    """Write the layer output ``dst`` of one sample from the pre-activation scratch ``src`` (C, H, W).

    ``pool_first``: max-pool, then k-WTA on the pooled map (nupic's LeSparseNet order)."""
    if kwta is not None and pool is not None and pool_first:
        maxpool(src, masked, channels, height, width, pool, None)
        kwta_into(masked, dst, boost, keys, cand, hist, thr, channels, height // pool, width // pool, kwta, mode)
    elif kwta is not None:
        if pool is not None and not kwta.local and not kwta.break_ties:
            group_threshold(src, boost, keys, cand, hist, thr, channels * height * width, height * width, kwta.k, mode)
            thr_value = T.alloc_buffer((1,), "float32")
            thr_value[0] = key_value(thr[0])
            maxpool(src, dst, channels, height, width, pool, (boost, thr_value[0], mode))
        elif pool is not None:
            kwta_into(src, masked, boost, keys, cand, hist, thr, channels, height, width, kwta, mode)
            maxpool(masked, dst, channels, height, width, pool, None)
        else:
            kwta_into(src, dst, boost, keys, cand, hist, thr, channels, height, width, kwta, mode)
    elif pool is not None:
        maxpool(src, dst, channels, height, width, pool, None)


__all__ = [
    "conv_epilogue",
    "epilogue_boost",
    "epilogue_scratch",
    "local_kwta",
    "masked_store",
    "maxpool",
]
