"""Exact k-th-largest selection on uint32 float keys, as TVMScript macros (no sort anywhere).

The k-WTA threshold is the k-th largest *boosted* value of a selection group. The kernels turn values into
order-preserving uint32 keys (:func:`~.common.float_key`: IEEE order, -0.0 == +0.0) and select on keys:

* :func:`radix_select` — MSD radix select: per pass a histogram of the next (at most 11-bit) digit of
  ``key - lo`` over the surviving candidates, a scan from the top bin to the bin that holds the target rank,
  and an in-place compaction of that bin (:func:`~.common.compress_store`: ``vpcompress`` on AVX-512, a
  table-driven ``vpermps`` left-pack on AVX2). At most 3 passes (32 bits); each pass works
  only on the previous pass's bin, so the cost is ~1 scalar histogram update + 1/16 vector compress per
  input element, plus the bins scanned.
* :func:`select_small` — whole-group radix select: vector min/max for the key range, then ``radix_select``.
* :func:`select_sampled` — for large groups (tens of thousands of elements): the threshold is bracketed by
  an exact selection on a strided sample of ``samples`` keys; one vectorized pass over the (boosted) values
  compares them with the bracket's two values as floats (no key is computed: one compare per bound and a
  ``vmovmskps``), counts those above the bracket and compresses those inside it; their keys are formed after
  the pass and ``radix_select`` finishes on the (few %) candidates. If the
  bracket misses (rare; e.g. adversarial value layouts) it falls back to ``select_small`` — the result is
  exact either way, only the speed depends on the sample.

All macros leave the threshold key in ``thr[0]``: the largest key t with ``#(key >= t) >= k``, i.e. the k-th
largest key counting ties. Buffers: ``keys`` is read (``select_small`` destroys it), ``cand`` needs
``n + 16`` elements, ``hist`` 2048 int32.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .common import (
    LANES,
    compress_store,
    compress_table_size,
    fill_compress_table,
    float_key,
    key_value,
    reduce_add,
    reduce_max,
    reduce_min,
    vec,
)

#: widest radix digit (2^11 histogram bins)
DIGIT_BITS = 11


@T.macro
def radix_select(src, count, rank, lo, nbits, hist, thr, table):
    """k-th largest (``rank``, 1-based) of ``src[0:count]``; all keys lie in ``[lo, lo + 2**nbits)``.
    ``table``: the left-pack table of :func:`~.common.compress_store`."""
    m = T.alloc_buffer((1,), "int32")
    kk = T.alloc_buffer((1,), "int32")
    base = T.alloc_buffer((1,), "uint32")
    bits = T.alloc_buffer((1,), "int32")
    j = T.alloc_buffer((1,), "int32")
    above = T.alloc_buffer((1,), "int32")
    group = T.alloc_buffer((1,), "int32")
    w = T.alloc_buffer((1,), "int32")
    m[0] = count
    kk[0] = rank
    base[0] = lo
    bits[0] = nbits
    for _pass in range(3):
        if bits[0] > 0:
            digit = T.meta_var(T.min(bits[0], DIGIT_BITS))
            ushift = T.meta_var(T.Cast("uint32", bits[0] - digit))
            nbins = T.meta_var(T.shift_left(1, digit))
            b0 = T.meta_var(base[0])
            for h in range(nbins):
                hist[h] = 0
            for i in range(m[0]):
                d = T.meta_var(T.Cast("int32", T.shift_right(src[i] - b0, ushift)))
                hist[d] = hist[d] + 1
            # scan from the top bin for the one holding rank kk: whole groups of 16 bins first (one vector sum
            # each; the keys of a float group cluster in a few bins, so most of the 2048 are empty), then bins
            above[0] = 0
            # j: the group being looked at (negative: fewer than 16 bins, no group scan); group: its sum (read at
            # bin 0 when j is negative, and then unused)
            j[0] = nbins - LANES
            group[0] = reduce_add(vec(hist, T.max(j[0], 0)))
            while j[0] >= 0 and above[0] + group[0] < kk[0]:
                above[0] = above[0] + group[0]
                j[0] = j[0] - LANES
                group[0] = reduce_add(vec(hist, T.max(j[0], 0)))
            j[0] = j[0] + LANES - 1
            while above[0] + hist[j[0]] < kk[0]:
                above[0] = above[0] + hist[j[0]]
                j[0] = j[0] - 1
            kk[0] = kk[0] - above[0]
            sel = T.meta_var(T.Cast("uint32", j[0]))
            # in-place compaction of bin `sel` (the write index never passes the read index; `v` and `keep`
            # are meta-vars, re-read from `src` at every use: compress_store counts before it stores)
            w[0] = 0
            for i0 in range(m[0] // LANES):
                v = T.meta_var(vec(src, i0 * LANES))
                keep = T.meta_var(
                    T.shift_right(v - T.broadcast(b0, LANES), T.broadcast(ushift, LANES)) == T.broadcast(sel, LANES)
                )
                compress_store(src, w, v, keep, table, "uint32")
            for i in range(m[0] - m[0] // LANES * LANES):
                s = T.meta_var(src[m[0] // LANES * LANES + i])
                src[w[0]] = s
                w[0] = w[0] + T.Cast("int32", T.shift_right(s - b0, ushift) == sel)
            m[0] = w[0]
            base[0] = b0 + T.shift_left(sel, ushift)
            bits[0] = bits[0] - digit
    thr[0] = base[0]


@T.macro
def key_range(keys, n, lo, hi):
    """lo[0], hi[0] = min, max of keys[0:n] (vectorized)."""
    vmin = T.alloc_buffer((LANES,), "uint32")
    vmax = T.alloc_buffer((LANES,), "uint32")
    vmin[T.ramp(0, 1, LANES)] = T.broadcast(T.uint32(0xFFFFFFFF), LANES)
    vmax[T.ramp(0, 1, LANES)] = T.broadcast(T.uint32(0), LANES)
    for i0 in range(n // LANES):
        vmin[T.ramp(0, 1, LANES)] = T.min(vmin[T.ramp(0, 1, LANES)], vec(keys, i0 * LANES))
        vmax[T.ramp(0, 1, LANES)] = T.max(vmax[T.ramp(0, 1, LANES)], vec(keys, i0 * LANES))
    lo[0] = reduce_min(vmin[T.ramp(0, 1, LANES)])
    hi[0] = reduce_max(vmax[T.ramp(0, 1, LANES)])
    for i in range(n - n // LANES * LANES):
        lo[0] = T.min(lo[0], keys[n // LANES * LANES + i])
        hi[0] = T.max(hi[0], keys[n // LANES * LANES + i])


@T.macro
def select_small(keys, n, k, hist, thr):
    """Exact k-th largest of keys[0:n] (destroys ``keys``)."""
    lo = T.alloc_buffer((1,), "uint32")
    hi = T.alloc_buffer((1,), "uint32")
    table = T.alloc_buffer((compress_table_size(),), "uint8")
    fill_compress_table(table)
    key_range(keys, n, lo, hi)
    span = T.meta_var(hi[0] - lo[0])
    nbits = T.meta_var(T.if_then_else(span == T.uint32(0), 0, 32 - T.Cast("int32", T.clz(span))))
    radix_select(keys, n, k, lo[0], nbits, hist, thr, table)


@T.macro
def select_sampled(source, keys, n, k, samples, rank_hi, rank_lo, cand, hist, thr):
    """Exact k-th largest of the keys of the n float values given by ``source``, via a bracket from a strided
    sample.

    ``source`` is a pair of Python callables ``(vector_value(i0), scalar_value(i))`` returning the values of
    elements [16*i0, 16*i0+16) and i (computed on the fly, e.g. values times boost: no key array is written
    unless the bracket misses, in which case ``keys`` receives all keys for the exact fallback). ``cand``
    holds >= n + 16 keys.

    The bracket pass compares floats with the bracket's bounds, which orders them as their keys do (-0.0 ==
    +0.0), NaN included: "above" is the unordered ``not (v <= hi)``, so a NaN counts above the bracket as its
    key ranks above +inf, and "inside" is ordered (a NaN is never a candidate). A bound that is itself NaN
    makes the bracket miss, and the exact fallback runs."""
    t_hi = T.alloc_buffer((1,), "uint32")
    t_lo = T.alloc_buffer((1,), "uint32")
    smin = T.alloc_buffer((1,), "uint32")
    smax = T.alloc_buffer((1,), "uint32")
    bounds = T.alloc_buffer((2,), "float32")
    gt = T.alloc_buffer((LANES,), "int32")
    m = T.alloc_buffer((1,), "int32")
    table = T.alloc_buffer((compress_table_size(),), "uint8")
    fill_compress_table(table)
    # strided sample (twice: each radix_select consumes its copy)
    smin[0] = T.uint32(0xFFFFFFFF)
    smax[0] = T.uint32(0)
    for s in range(samples):
        v = T.meta_var(float_key(source[1](s * (n // samples))))
        cand[s] = v
        cand[samples + s] = v
        smin[0] = T.min(smin[0], v)
        smax[0] = T.max(smax[0], v)
    span = T.meta_var(smax[0] - smin[0])
    sbits = T.meta_var(T.if_then_else(span == T.uint32(0), 0, 32 - T.Cast("int32", T.clz(span))))
    radix_select(cand, samples, rank_hi, smin[0], sbits, hist, t_hi, table)
    for s in range(samples):
        cand[s] = cand[samples + s]
    radix_select(cand, samples, rank_lo, smin[0], sbits, hist, t_lo, table)
    # one pass over the values: count those above the bracket, compress those inside it (as float bits)
    bounds[0] = key_value(t_lo[0])
    bounds[1] = key_value(t_hi[0])
    lo_v = T.meta_var(T.broadcast(bounds[0], LANES))
    hi_v = T.meta_var(T.broadcast(bounds[1], LANES))
    gt[T.ramp(0, 1, LANES)] = T.broadcast(0, LANES)
    m[0] = 0
    for i0 in range(n // LANES):
        v = T.meta_var(source[0](i0))
        gt[T.ramp(0, 1, LANES)] = gt[T.ramp(0, 1, LANES)] + T.Cast(f"int32x{LANES}", T.Not(v <= hi_v))
        inside = T.meta_var(T.bitwise_and(v >= lo_v, v <= hi_v))
        compress_store(cand, m, T.reinterpret(f"uint32x{LANES}", v), inside, table, "uint32")
    c_gt = T.alloc_buffer((1,), "int32")
    c_gt[0] = reduce_add(gt[T.ramp(0, 1, LANES)])
    for i in range(n - n // LANES * LANES):
        v = T.meta_var(source[1](n // LANES * LANES + i))
        c_gt[0] = c_gt[0] + T.Cast("int32", T.Not(v <= bounds[1]))
        cand[m[0]] = T.reinterpret("uint32", v)
        m[0] = m[0] + T.Cast("int32", T.bitwise_and(v >= bounds[0], v <= bounds[1]))
    if c_gt[0] < k and k <= c_gt[0] + m[0]:
        for i0 in range(T.ceildiv(m[0], LANES)):  # the candidates' keys (cand has 16 elements of slack)
            cand[T.ramp(i0 * LANES, 1, LANES)] = float_key(
                T.reinterpret(f"float32x{LANES}", cand[T.ramp(i0 * LANES, 1, LANES)]), LANES
            )
        span2 = T.meta_var(t_hi[0] - t_lo[0])
        nbits2 = T.meta_var(T.if_then_else(span2 == T.uint32(0), 0, 32 - T.Cast("int32", T.clz(span2))))
        radix_select(cand, m[0], k - c_gt[0], t_lo[0], nbits2, hist, thr, table)
    else:
        for i0 in range(n // LANES):
            keys[T.ramp(i0 * LANES, 1, LANES)] = float_key(source[0](i0), LANES)
        for i in range(n - n // LANES * LANES):
            keys[n // LANES * LANES + i] = float_key(source[1](n // LANES * LANES + i))
        select_small(keys, n, k, hist, thr)


@T.macro
def count_greater(keys, n, thr, out):
    """out[0] = #(keys[0:n] > thr) (vectorized)."""
    acc = T.alloc_buffer((LANES,), "int32")
    acc[T.ramp(0, 1, LANES)] = T.broadcast(0, LANES)
    for i0 in range(n // LANES):
        acc[T.ramp(0, 1, LANES)] = acc[T.ramp(0, 1, LANES)] + T.Cast(
            f"int32x{LANES}", vec(keys, i0 * LANES) > T.broadcast(thr, LANES)
        )
    out[0] = reduce_add(acc[T.ramp(0, 1, LANES)])
    for i in range(n - n // LANES * LANES):
        out[0] = out[0] + T.Cast("int32", keys[n // LANES * LANES + i] > thr)


@T.macro
def select_bisect(keys, n, k, thr):
    """Exact k-th largest of keys[0:n] by 32 vectorized counting passes (bitwise bisection on the key):
    thr = the largest t with #(keys >= t) >= k. No scalar histogram; best for small n (<= a few 1000)."""
    t = T.alloc_buffer((1,), "uint32")
    cnt = T.alloc_buffer((LANES,), "int32")
    tail = T.alloc_buffer((1,), "int32")
    t[0] = T.uint32(0)
    for bit in range(32):
        cand_t = T.meta_var(T.bitwise_or(t[0], T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit))))
        cnt[T.ramp(0, 1, LANES)] = T.broadcast(0, LANES)
        for i0 in range(n // LANES):
            cnt[T.ramp(0, 1, LANES)] = cnt[T.ramp(0, 1, LANES)] + T.Cast(
                f"int32x{LANES}", vec(keys, i0 * LANES) >= T.broadcast(cand_t, LANES)
            )
        tail[0] = 0
        for i in range(n - n // LANES * LANES):
            tail[0] = tail[0] + T.Cast("int32", keys[n // LANES * LANES + i] >= cand_t)
        if reduce_add(cnt[T.ramp(0, 1, LANES)]) + tail[0] >= k:
            t[0] = cand_t
    thr[0] = t[0]
