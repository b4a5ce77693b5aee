"""GPU TIR kernels of the cuda target, each specialised to its layer's constant weights and sparsity.

Every generator is a plain function of static shapes, attributes and numpy constants that returns a
:class:`Kernel`: a TIR ``PrimFunc`` with params ``(activation, *constants, output)`` (batch symbolic) plus the
packed constants. Kernels are written as *phases*: consecutive ``threadIdx.x`` loops inside one
``blockIdx.x`` loop. TVM fuses the phases into one thread scope and its ThreadSync pass puts a
``__syncthreads()`` wherever a phase reads shared memory that an earlier phase wrote, so no barrier is written
by hand. Values that live across phases are in shared memory (per thread: indexed by ``threadIdx.x``) or, when
every thread holds the same value, in ``local`` scalars that each thread recomputes identically.

The same code is emitted with the :data:`CPU` flavour as serial loops (blocks, then each phase's threads one
after another; shared memory becomes ordinary scratch, atomics plain adds), which TVM's llvm backend runs: the
tests check every kernel's logic against numpy on machines without a GPU. :meth:`Flavour.emulation` with a
seed runs the threads of every phase (and the blocks) in a shuffled order, so that a result depending on the
order of threads shows up as a bitwise difference between seeds.

**Deterministic by design.** No float is ever accumulated with an atomic or by two threads in one phase: every
float sum has one owner thread at a time and a fixed order, so the bits of every output are the same on every
run and every GPU. The only atomics are the k-WTA histogram's integer increments (exact in any order). The
generators check their assumptions (power-of-two block sizes for the scans, lanes dividing the block, packed
code ranges) and raise :class:`CompileError` otherwise.

Kernels (``T`` threads per block, ``B`` the batch):

* :func:`kwta_global` — k-WTA over a whole sample (a ``(B, n)`` row or a flattened ``C*H*W``): one block per
  sample. Exact threshold by 4-pass MSD radix select on order-preserving uint32 keys of the boosted values
  (8-bit digits; per pass each warp builds its own 256-bin shared histogram with integer shared atomics over
  the keys that match the prefix so far, the warps' bins are summed, a block suffix scan over the 256 bins
  follows, and the one thread whose digit holds rank k publishes it). ``ties="keep"`` masks
  ``key < threshold``; ``"break"`` keeps, among keys equal to the threshold, the first ones in flat order
  (per-thread contiguous segments, one block-wide prefix sum of their tie counts). A following ReLU and/or
  max-pool are fused (ties kept).
* :func:`kwta_local` — k-WTA over the channels at each pixel: one thread per (sample, pixel), keys in
  registers, threshold by 32-step bisection on the key bits (largest t with #(key >= t) >= k).
* :func:`conv2d_gather` — weight-sparse conv: one thread per output element, looping over its filter's
  non-zero taps only (CSR per filter; padding, stride, dilation, groups), bias and a fused ReLU / max-pool.
* :func:`conv2d_scatter` — sparse-sparse conv (also used for activation-sparse with dense weights): one block
  per (sample, group of output channels), so a sample spreads over several blocks. The block compacts the
  sample's non-zero inputs (chunks of ``T``, in index order by a block prefix sum), then a warp per active
  input (8 in flight per 256-thread block) scatters it over the non-zero taps of its input channel (CSC-like
  lists per channel and group) into the warp's own copy of the accumulator tile, one barrier per round of
  inputs (:func:`scatter_active`); the epilogue sums the copies in warp order, adds the bias and applies ReLU
  and max-pool.
* :func:`linear_gather` — weight-sparse linear: one thread per (sample, unit) over its row's non-zeros
  (ELL transposed for a fixed fan-in, so consecutive threads read consecutive weights; CSR otherwise).
* :func:`linear_scatter` — sparse-sparse linear (and activation-sparse with dense weights): one block per
  (sample, slice of at most :data:`LINEAR_SLICE` units); the same warp-per-active-input scatter over the
  slice's CSC columns, then the copies summed in warp order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ...compiler.errors import CompileError
from ...compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from ...compiler.ir.ops.sparse import MaxPoolStage
from ...compiler.ir.shapes import window_output_dim
from ...compiler.ir.weights import csc_arrays, ell_arrays
from ..kernel import Kernel

#: Shared memory budget (floats) for a scatter kernel's accumulator tile (40 KiB of the 48 KiB static limit).
SMEM_FLOATS = 10240
#: Threads per block.
THREADS = 256
NEG_INF = float("-inf")


class Flavour:
    """How kernels are emitted: for the GPU, or as serial loops for the CPU (testing).

    The CPU emulation runs each phase's threads (and the blocks) one after another. With a ``seed`` it runs them
    in a seeded pseudo-random order instead of ``0, 1, 2, ...`` (a different affine-xor permutation of the thread
    ids for every phase, a rotation of the block ids), so a result that depends on the order in which threads or
    blocks touch shared data changes with the seed: the determinism tests compare the outputs of several seeds
    bitwise. Only integer atomics remain in the kernels (exact, so order-free); float accumulations are owned by
    one thread at a time and combined in a fixed order.
    """

    def __init__(self, gpu: bool, seed: int | None = None) -> None:
        self.gpu = gpu
        self.shared = "shared" if gpu else "global"
        self._rng = np.random.default_rng(seed) if seed is not None and not gpu else None

    @staticmethod
    def emulation(seed: int | None = None) -> Flavour:
        """A CPU flavour whose thread and block order is shuffled by ``seed`` (None: in order)."""
        return Flavour(False, seed)

    def blocks(self, extent: Any) -> Any:
        return T.thread_binding(extent, thread="blockIdx.x") if self.gpu else T.serial(extent)

    def threads(self, extent: int) -> Any:
        return T.thread_binding(extent, thread="threadIdx.x") if self.gpu else T.serial(extent)

    def tid(self, i: Any, extent: int) -> Any:
        """The thread id that loop step ``i`` of a phase of ``extent`` threads runs (``i`` itself but when
        emulating in a shuffled order)."""
        if self._rng is None:
            return i
        if extent & (extent - 1):
            raise CompileError(f"a block of {extent} threads: kernels need a power-of-two block size")
        a = int(self._rng.integers(0, extent)) * 2 + 1  # odd: a bijection modulo a power of two
        c, m = (int(v) for v in self._rng.integers(0, extent, 2))
        return T.bitwise_xor(T.bitwise_and(a * i + c, extent - 1), m)

    def bid(self, i: Any, extent: Any) -> Any:
        """The block id that loop step ``i`` of ``extent`` blocks runs (rotated when emulating shuffled)."""
        if self._rng is None:
            return i
        return T.floormod(i + T.int64(int(self._rng.integers(1, 1 << 20))), extent)

    def barrier(self) -> None:
        """Emit ``__syncthreads()`` (nothing on the CPU, where phases run one after another)."""
        T.evaluate(T.tvm_storage_sync("shared") if self.gpu else T.int32(0))

    def atomic_add(self, buf: Any, index: Any, value: Any) -> None:
        """Emit ``buf[index] += value`` for an *integer* ``value`` (a shared-memory atomic on the GPU; exact, so
        the result does not depend on the order of the adds). Float accumulations never use atomics."""
        if str(value.ty) not in ("int32", "uint32"):
            raise CompileError(f"float atomics are not deterministic: atomic_add of a {value.ty} value")
        if self.gpu:
            T.evaluate(T.call_intrin(value.ty, "tirx.cuda.atomic_add", T.address_of(buf[index]), value))
        else:
            T.buffer_store(buf, buf[index] + value, [index])


GPU = Flavour(True)
CPU = Flavour(False)


def _finish(func: tirx.PrimFunc, constants: Sequence[np.ndarray], out_shape: Sequence[int], kind: str,
            name: str) -> Kernel:
    """The kernel of family ``kind`` for layer ``name`` (its symbol ``<kind>_<name>``; ``kind`` without a name)."""
    func = func.with_attr("tirx.is_scheduled", True).without_attr("global_symbol")  # named by the lowering
    return Kernel(func, [np.ascontiguousarray(c) for c in constants], f"{kind}_{name}" if name else kind,
                  {"family": kind}, tuple(int(d) for d in out_shape))


def _fused(epilogue: Epilogue | None, what: str) -> tuple[bool, MaxPoolStage | None]:
    """(relu, max-pool) of the stages a kernel fuses; a k-WTA among them is a CompileError (its own kernel)."""
    if epilogue is None:
        return False, None
    if epilogue.kwta is not None:
        raise CompileError(f"{what}: the k-WTA is a kernel of its own, not a fused stage")
    return epilogue.relu, epilogue.pool


# -- expression helpers ----------------------------------------------------------------------------------------
def float_key(value: Any) -> Any:
    """Order-preserving uint32 key of a float32: ``a < b`` iff ``key(a) < key(b)``; -0.0 and +0.0 are equal."""
    bits = T.reinterpret("uint32", value)
    bits = T.Select(bits == T.uint32(0x80000000), T.uint32(0), bits)
    sign = T.reinterpret("uint32", T.shift_right(T.reinterpret("int32", bits), T.int32(31)))
    return T.bitwise_xor(bits, T.bitwise_or(sign, T.uint32(0x80000000)))


def np_float_key(x: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`float_key`."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).copy()
    bits[bits == 0x80000000] = 0
    sign = (bits.view(np.int32) >> 31).view(np.uint32)
    return bits ^ (sign | np.uint32(0x80000000))


def _relu(value: Any, relu: bool) -> Any:
    return T.max(value, T.float32(0)) if relu else value


class BoostIndex:
    """Where the boost factor of unit ``i`` (flat index within a selection group of ``shape``) lives."""

    def __init__(self, boost: np.ndarray | None, shape: Sequence[int]) -> None:
        shape = tuple(int(d) for d in shape)
        if boost is None:
            self.array = np.ones(1, np.float32)
            self.strides: list[tuple[int, int, int]] | None = None
            return
        b = np.asarray(boost, np.float32)
        b = b.reshape(b.shape[1:]) if b.ndim == len(shape) + 1 else b
        if b.ndim != len(shape):
            raise CompileError(f"boost of shape {list(np.shape(boost))} does not fit a group of shape {list(shape)}")
        kept = tuple(d if d == s else 1 for d, s in zip(b.shape, shape, strict=True))
        self.array = np.ascontiguousarray(b.reshape(kept), np.float32).reshape(-1)
        x_strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
        b_strides = [math.prod(kept[a + 1:]) for a in range(len(shape))]
        self.strides = [(x_strides[a], shape[a], b_strides[a]) for a in range(len(shape)) if kept[a] != 1]

    @property
    def size(self) -> int:
        return int(self.array.size)

    def boosted(self, value: Any, i: Any, buf: Any) -> Any:
        if self.strides is None:
            return value
        index = 0
        for x_stride, extent, b_stride in self.strides:
            index = index + (i // x_stride) % extent * b_stride
        return value * buf[index]


def pooled_dims(h: int, w: int, pool: Any) -> tuple[int, int]:
    kh, kw = pool.kernel
    sh, sw = pool.strides
    pt, pl, pb, pr = pool.pads
    oh = window_output_dim(h, kh, sh, pt, pb, 1, pool.ceil_mode)
    ow = window_output_dim(w, kw, sw, pl, pr, 1, pool.ceil_mode)
    assert oh is not None and ow is not None
    return oh, ow


@T.macro
def sync(nt, F):
    """A block-wide barrier as its own phase. Written out wherever a phase reads shared memory that other
    threads wrote in an earlier phase: TVM's ThreadSync does not see the shared atomics."""
    for _tx in F.threads(nt):
        F.barrier()


@T.macro
def block_scan(scan, tmp, nt, log_nt, F):
    """Inclusive prefix sum of the int32 shared array ``scan[0:nt]`` (Hillis-Steele; ``tmp`` is scratch)."""
    sync(nt, F)
    for d in range(log_nt):
        for tx_ in F.threads(nt):
            tx = T.meta_var(F.tid(tx_, nt))
            tmp[tx] = scan[tx] + T.if_then_else(tx >= T.shift_left(1, d), scan[T.max(tx - T.shift_left(1, d), 0)], 0)
        sync(nt, F)
        for tx_ in F.threads(nt):
            tx = T.meta_var(F.tid(tx_, nt))
            scan[tx] = tmp[tx]
        sync(nt, F)


@T.macro
def fill_zero(buf, size, nt, F):
    """buf[0:size] = 0 by the block's ``nt`` threads, then a barrier."""
    for tx_ in F.threads(nt):
        tx = T.meta_var(F.tid(tx_, nt))
        for j in range((size + nt - 1) // nt):
            if j * nt + tx < size:
                buf[j * nt + tx] = T.float32(0)
    sync(nt, F)


def block_threads(nt: int, what: str) -> int:
    """Check a block size: a power of two (the block scans and the shuffled emulation need one) of 32..1024
    threads (whole warps, at most a CUDA block)."""
    if not 32 <= nt <= 1024 or nt & (nt - 1):
        raise CompileError(f"{what}: a block of {nt} threads; the kernels need a power of two from 32 to 1024 "
                           f"(the block prefix sums assume one)")
    return nt


def scatter_layout(nt: int, lanes: int | None, unit_floats: int, what: str) -> tuple[int, int]:
    """(lanes, units per block) of a scatter kernel whose accumulator needs ``unit_floats`` per output unit
    (an output channel's map, or one linear unit).

    ``nt // lanes`` groups of ``lanes`` threads each take one active input at a time (a warp per input by
    default: 8 inputs in flight in a 256-thread block) and add into their own copy of the block's accumulator
    tile, so no two threads ever add into the same float in the same phase; the copies are summed in a fixed
    order at the end. The units per block is what fits ``SMEM_FLOATS`` with one copy per group (0: nothing
    fits). ``lanes`` (None: 32, or fewer copies with more lanes when one copy per warp does not fit one unit)
    must be a power of two dividing ``nt``."""
    if lanes is None:
        lanes = min(32, nt)
        while lanes < nt and (nt // lanes) * unit_floats > SMEM_FLOATS:
            lanes *= 2
    if lanes < 1 or lanes & (lanes - 1) or nt % lanes:
        raise CompileError(f"{what}: {lanes} lanes per active input must be a power of two dividing the block's "
                           f"{nt} threads")
    return lanes, SMEM_FLOATS // ((nt // lanes) * unit_floats)


@T.macro
def scatter_active(src, base, n, nt, log_nt, lanes, chunks, F, entry_range, scatter_entry):
    """Scatter the non-zeros of ``src[base : base + n]`` deterministically.

    Chunk by chunk of ``nt`` inputs: compact the chunk's non-zeros in index order into (``cidx``, ``cval``) with
    a block scan; then in rounds, group ``g = tx // lanes`` of ``lanes`` threads takes active input
    ``round * groups + g`` (``groups = nt // lanes`` inputs in flight) and its lanes walk that input's entries
    in ``chunks`` strides of ``lanes`` (a static bound, so that TVM never needs a barrier under a condition):
    ``entry_range(loc)`` sets ``loc[1]:loc[2]`` from the input index ``loc[0]`` and ``scatter_entry(loc, val, e,
    g)`` adds entry ``loc[1] + e`` times ``val[0]`` into group ``g``'s own accumulator copy (an input's entries
    hit distinct outputs, so the lanes never collide). A barrier ends every round: each float of copy ``g``
    gets its adds in the order of the inputs group ``g`` took, whatever the thread timing."""
    groups = T.meta_var(nt // lanes)
    cidx = T.alloc_buffer((nt,), "int32", scope=F.shared)
    cval = T.alloc_buffer((nt,), "float32", scope=F.shared)
    scan = T.alloc_buffer((nt,), "int32", scope=F.shared)
    tmp = T.alloc_buffer((nt,), "int32", scope=F.shared)
    total = T.alloc_buffer((1,), "int32", scope="local")
    for ch in range((n + nt - 1) // nt):
        for tx_ in F.threads(nt):
            tx = T.meta_var(F.tid(tx_, nt))
            scan[tx] = T.Cast("int32", ch * nt + tx < n and src[base + T.min(ch * nt + tx, n - 1)] != T.float32(0))
        block_scan(scan, tmp, nt, log_nt, F)
        for tx_ in F.threads(nt):
            tx = T.meta_var(F.tid(tx_, nt))
            total[0] = scan[nt - 1]  # the same in every thread
            if ch * nt + tx < n:  # noqa: SIM102 (guards the load below)
                if src[base + ch * nt + tx] != T.float32(0):
                    cidx[scan[tx] - 1] = ch * nt + tx
                    cval[scan[tx] - 1] = src[base + ch * nt + tx]
        sync(nt, F)
        for r in range((total[0] + groups - 1) // groups):
            for c in range(chunks):
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    loc = T.alloc_buffer((3,), "int32", scope="local")  # input index, entry begin, entry end
                    val = T.alloc_buffer((1,), "float32", scope="local")
                    if r * groups + tx // lanes < total[0]:
                        loc[0] = cidx[r * groups + tx // lanes]
                        val[0] = cval[r * groups + tx // lanes]
                        entry_range(loc)
                        if c * lanes + tx % lanes < loc[2] - loc[1]:
                            scatter_entry(loc, val, c * lanes + tx % lanes, tx // lanes)
            sync(nt, F)
        sync(nt, F)


def warp_total(hist: Any, digit: Any, warps: int) -> Any:
    """``hist[digit] + hist[256 + digit] + ...``: one bin of the per-warp histograms, summed (integers)."""
    total = hist[digit]
    for w in range(1, warps):
        total = total + hist[w * 256 + digit]
    return total


def summed_copies(acc: Any, index: Any, copies: int, size: int) -> Any:
    """``acc[index] + acc[size + index] + ... + acc[(copies - 1) * size + index]``: the groups' accumulator
    copies of one float, summed in group order."""
    total = acc[index]
    for p in range(1, copies):
        total = total + acc[p * size + index]
    return total


# -- k-WTA -------------------------------------------------------------------------------------------------------
def kwta_global(shape: Sequence[int], kwta: Kwta, epilogue: Epilogue | None = None, name: str = "", *,
                flavour: Flavour = GPU, threads: int | None = None) -> Kernel:
    """k-WTA over each whole sample of shape ``shape``; the ``epilogue``'s ReLU / max-pool applied after it.

    One block of ``threads`` per sample (None: 512 for groups over 4096 units, else 256)."""
    k, ties, boost = kwta.k, kwta.ties, kwta.boost
    relu, pool = _fused(epilogue, "kwta_global")
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
                                Yf[b * n_out + j * nt + tx] = _relu(T.if_then_else(
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
                                Yf[b * n_out + j * nt + tx] = _relu(best[0], relu)
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
                                Yf[b * n + tx * seg + s] = _relu(Xf[b * n + tx * seg + s], relu)
                            elif key_at(Xf, b * n, tx * seg + s, boost_buf) == pre[4] and seen[0] < krem[4]:
                                Yf[b * n + tx * seg + s] = _relu(Xf[b * n + tx * seg + s], relu)
                                seen[0] = seen[0] + 1
                            else:
                                Yf[b * n + tx * seg + s] = T.float32(0)

    return _finish(kwta, [bidx.array], out_shape, "kwta_global", name)


def kwta_local(shape: Sequence[int], kwta: Kwta, epilogue: Epilogue | None = None, name: str = "", *,
               flavour: Flavour = GPU) -> Kernel:
    """k-WTA over axis 0 (channels) of ``shape`` = (C, *spatial), independently at every spatial position; the
    ``epilogue``'s ReLU applied after it."""
    k, ties, boost = kwta.k, kwta.ties, kwta.boost
    relu, pool = _fused(epilogue, "kwta_local")
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
                            Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = _relu(
                                T.if_then_else(keys[c] < st[0], T.float32(0),
                                               Xf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix]),
                                relu)
                    else:
                        st[2] = T.uint32(k)
                        for c in range(channels):
                            st[2] = st[2] - T.Cast("uint32", keys[c] > st[0])
                        for c in range(channels):
                            if keys[c] > st[0] or (keys[c] == st[0] and st[2] > T.uint32(0)):
                                Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = _relu(
                                    Xf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix], relu)
                                if keys[c] == st[0]:
                                    st[2] = st[2] - T.uint32(1)
                            else:
                                Yf[(blk * nt + tx) // npix * n + c * npix + (blk * nt + tx) % npix] = T.float32(0)

    return _finish(kwta, [bidx.array], shape, "kwta_local", name)


# -- convolution -------------------------------------------------------------------------------------------------
def _check_linear(geometry: LinearGeometry, weight: np.ndarray) -> None:
    if geometry.out_features != weight.shape[0] or geometry.in_features not in (None, weight.shape[1]):
        raise CompileError(f"linear geometry {geometry} does not fit a weight of shape {list(weight.shape)}")


def _pool_params(pool: Any, oh: int, ow: int) -> tuple[int, int, int, int, int, int, int, int]:
    """(out h, out w, kernel h, kernel w, stride h, stride w, pad top, pad left); identity without a pool."""
    if pool is None:
        return oh, ow, 1, 1, 1, 1, 0, 0
    qh, qw = pooled_dims(oh, ow, pool)
    return qh, qw, pool.kernel[0], pool.kernel[1], pool.strides[0], pool.strides[1], pool.pads[0], pool.pads[1]


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
    relu, pool = _fused(epilogue, "conv2d_gather")
    c_in, h, w = geometry.in_shape
    o_ch, cg, _kh, _kw = geometry.weight_shape
    sh, sw = geometry.strides
    pt, pl = geometry.pads[0], geometry.pads[1]
    dh, dw = geometry.dilations
    og = o_ch // geometry.groups
    oh, ow = geometry.out_hw
    qh, qw, pkh, pkw, psh, psw, ppt, ppl = _pool_params(pool, oh, ow)
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
                    Yf[blk * nt + tx] = _relu(acc[1], relu)

    return _finish(conv, [ptr, codes, vals, bias_arr], (o_ch, qh, qw), "conv2d_weight_sparse", name)


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
    relu, pool = _fused(epilogue, kind)
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
    qh, qw, pkh, pkw, psh, psw, ppt, ppl = _pool_params(pool, oh, ow)
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
                        Yf[blk // groups * m + (blk % groups * og) * (qh * qw) + j * nt + tx] = _relu(
                            best[0] + bias_buf[blk % groups * og + (j * nt + tx) // (qh * qw)], relu)

    return _finish(conv, [ptr, codes, vals, bias_arr], (o_ch, qh, qw), kind, name)


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


# -- linear ------------------------------------------------------------------------------------------------------
def linear_gather(geometry: LinearGeometry, weight: np.ndarray, bias: np.ndarray | None,
                  epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU) -> Kernel:
    """Weight-sparse linear ``x @ W.T + b`` (+ReLU): one thread per (sample, unit) over its row's non-zeros."""
    relu, _ = _fused(epilogue, "linear_gather")
    _check_linear(geometry, weight)
    weight = np.asarray(weight, np.float32)
    o_units, i_units = weight.shape
    nnz_rows = (weight != 0).sum(axis=1)
    fan = int(nnz_rows.max()) if o_units else 0
    bias_arr = np.zeros(o_units, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_units)
    F = flavour
    nt = THREADS
    total_nnz = int(nnz_rows.sum())
    if fan * o_units <= 1.25 * max(total_nnz, 1):  # (nearly) fixed fan-in: ELL, transposed for coalescing
        cols, vals = (np.ascontiguousarray(a.T) for a in ell_arrays(weight))
        slots = cols.shape[0]

        @T.prim_func
        def linear(x_handle: T.handle, col_buf: T.Buffer((slots, o_units), "int32"),
                   val_buf: T.Buffer((slots, o_units), "float32"), bias_buf: T.Buffer((o_units,), "float32"),
                   y_handle: T.handle):
            T.func_attr({"tir.noalias": True})
            batch = T.int64()
            X = T.match_buffer(x_handle, (batch, i_units), "float32")
            Y = T.match_buffer(y_handle, (batch, o_units), "float32")
            for blk_ in F.blocks((batch * o_units + nt - 1) // nt):
                blk = T.meta_var(F.bid(blk_, (batch * o_units + nt - 1) // nt))
                for tx_ in F.threads(nt):
                    tx = T.meta_var(F.tid(tx_, nt))
                    if blk * nt + tx < batch * o_units:
                        acc = T.alloc_buffer((1,), "float32", scope="local")
                        acc[0] = bias_buf[(blk * nt + tx) % o_units]
                        for t in range(slots):
                            acc[0] = acc[0] + val_buf[t, (blk * nt + tx) % o_units] * X[
                                (blk * nt + tx) // o_units, col_buf[t, (blk * nt + tx) % o_units]]
                        Y[(blk * nt + tx) // o_units, (blk * nt + tx) % o_units] = _relu(acc[0], relu)

        return _finish(linear, [cols, vals, bias_arr], (o_units,), "linear_weight_sparse", name)

    rowptr = np.concatenate([[0], np.cumsum(nnz_rows)]).astype(np.int32)
    rr, cc = np.nonzero(weight)
    cols = cc.astype(np.int32) if cc.size else np.zeros(1, np.int32)
    vals = weight[rr, cc].astype(np.float32) if cc.size else np.zeros(1, np.float32)
    nnz = cols.size

    @T.prim_func
    def linear_csr(x_handle: T.handle, ptr_buf: T.Buffer((o_units + 1,), "int32"),
                   col_buf: T.Buffer((nnz,), "int32"), val_buf: T.Buffer((nnz,), "float32"),
                   bias_buf: T.Buffer((o_units,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, i_units), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        for blk_ in F.blocks((batch * o_units + nt - 1) // nt):
            blk = T.meta_var(F.bid(blk_, (batch * o_units + nt - 1) // nt))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                if blk * nt + tx < batch * o_units:
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    acc[0] = bias_buf[(blk * nt + tx) % o_units]
                    for t in range(ptr_buf[(blk * nt + tx) % o_units + 1] - ptr_buf[(blk * nt + tx) % o_units]):
                        acc[0] = acc[0] + val_buf[ptr_buf[(blk * nt + tx) % o_units] + t] * X[
                            (blk * nt + tx) // o_units, col_buf[ptr_buf[(blk * nt + tx) % o_units] + t]]
                    Y[(blk * nt + tx) // o_units, (blk * nt + tx) % o_units] = _relu(acc[0], relu)

    return _finish(linear_csr, [rowptr, cols, vals, bias_arr], (o_units,), "linear_weight_sparse", name)


#: Output units per block of the scatter linear: a few blocks per sample at small batch.
LINEAR_SLICE = 256


def pack_column_slices(weight: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC of each slice of ``units`` output rows of ``weight``: ``ptr`` (slices * (inputs + 1)), row indices
    local to the slice and values (each slice's entries after the previous slice's)."""
    o_units = weight.shape[0]
    ptrs, rows_l, vals_l, pos = [], [], [], 0
    for start in range(0, o_units, units):
        colptr, rows, vals = csc_arrays(weight[start:start + units])
        ptrs.append(colptr + pos)
        rows_l.append(rows)
        vals_l.append(vals.astype(np.float32))
        pos += rows.size
    return (np.concatenate(ptrs).astype(np.int32), np.concatenate(rows_l).astype(np.int32),
            np.concatenate(vals_l))


def linear_scatter(geometry: LinearGeometry, weight: np.ndarray, bias: np.ndarray | None,
                   epilogue: Epilogue | None = None, name: str = "", *, flavour: Flavour = GPU,
                   kind: str = "linear_sparse_sparse", threads: int = THREADS, lanes: int | None = None
                   ) -> Kernel | None:
    """Sparse-sparse linear: one block per (sample, slice of output units) scatters the sample's active inputs
    over the slice's CSC columns (see :func:`scatter_layout`); None when one unit per accumulator copy does not
    fit in shared memory."""
    relu, _ = _fused(epilogue, kind)
    _check_linear(geometry, weight)
    weight = np.asarray(weight, np.float32)
    o_units, i_units = weight.shape
    nt = block_threads(threads, kind)
    lanes, units = scatter_layout(nt, lanes, 1, kind)
    units = min(o_units, units, LINEAR_SLICE)
    if units == 0:
        return None
    slices = -(-o_units // units)
    copies = nt // lanes
    ptr, rows, vals = pack_column_slices(weight, units)
    chunks = max(1, -(-int(np.diff(ptr).max()) // lanes))  # lane strides to cover the longest column slice
    nnz = rows.size
    bias_arr = np.zeros(o_units, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(o_units)
    F = flavour
    log_nt = nt.bit_length() - 1

    def column_range(ptr_buf, part):
        def entry_range(loc):  # the active input's CSC column within this block's slice
            T.buffer_store(loc, ptr_buf[part * (i_units + 1) + loc[0]], [1])
            T.buffer_store(loc, ptr_buf[part * (i_units + 1) + loc[0] + 1], [2])
        return entry_range

    def column_scatter(acc, row_buf, val_buf):
        def scatter_entry(loc, val, e, copy):  # rows of one column are distinct: no two lanes collide
            index = copy * units + row_buf[loc[1] + e]
            T.buffer_store(acc, acc[index] + val_buf[loc[1] + e] * val[0], [index])
        return scatter_entry

    @T.prim_func
    def linear(x_handle: T.handle, ptr_buf: T.Buffer((slices * (i_units + 1),), "int32"),
               row_buf: T.Buffer((nnz,), "int32"), val_buf: T.Buffer((nnz,), "float32"),
               bias_buf: T.Buffer((o_units,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        X = T.match_buffer(x_handle, (batch, i_units), "float32")
        Y = T.match_buffer(y_handle, (batch, o_units), "float32")
        Xf = T.decl_buffer((batch * i_units,), "float32", data=X.data)
        Yf = T.decl_buffer((batch * o_units,), "float32", data=Y.data)
        for blk_ in F.blocks(batch * slices):
            blk = T.meta_var(F.bid(blk_, batch * slices))
            acc = T.alloc_buffer((copies * units,), "float32", scope=F.shared)
            fill_zero(acc, copies * units, nt, F)
            scatter_active(Xf, blk // slices * i_units, i_units, nt, log_nt, lanes, chunks, F,
                           column_range(ptr_buf, blk % slices), column_scatter(acc, row_buf, val_buf))
            for tx_ in F.threads(nt):
                tx = T.meta_var(F.tid(tx_, nt))
                for j in range((units + nt - 1) // nt):
                    if j * nt + tx < units and blk % slices * units + j * nt + tx < o_units:
                        Yf[blk // slices * o_units + blk % slices * units + j * nt + tx] = _relu(
                            summed_copies(acc, j * nt + tx, copies, units)
                            + bias_buf[blk % slices * units + j * nt + tx], relu)

    return _finish(linear, [ptr, rows, vals, bias_arr], (o_units,), kind, name)
