"""What every GPU kernel family of the cuda target shares: the :class:`Flavour` (GPU, or serial / shuffled CPU
emulation), the kernel wrapper, float keys, boost indexing, block-level phases (barriers, scans, zeroing), the
warp-per-active-input scatter and its layout, and the fused ReLU / max-pool parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ....compiler.errors import CompileError
from ....compiler.ir.layer import Epilogue
from ....compiler.ir.ops.sparse import MaxPoolStage
from ....compiler.ir.shapes import window_output_dim
from ...kernel import Kernel

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


def finish(func: tirx.PrimFunc, constants: Sequence[np.ndarray], out_shape: Sequence[int], kind: str,
            name: str) -> Kernel:
    """The kernel of family ``kind`` for layer ``name`` (its symbol ``<kind>_<name>``; ``kind`` without a name)."""
    func = func.with_attr("tirx.is_scheduled", True).without_attr("global_symbol")  # named by the lowering
    return Kernel(func, [np.ascontiguousarray(c) for c in constants], f"{kind}_{name}" if name else kind,
                  {"family": kind}, tuple(int(d) for d in out_shape))


def fused_stages(epilogue: Epilogue | None, what: str) -> tuple[bool, MaxPoolStage | None]:
    """(relu, max-pool) of the stages a kernel fuses; a k-WTA among them is a CompileError (its own kernel)."""
    if epilogue is None:
        return False, None
    if epilogue.kwta is not None:
        raise CompileError(f"{what}: the k-WTA is a kernel of its own, not a fused stage")
    return epilogue.relu, epilogue.pool


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


def relu_if(value: Any, relu: bool) -> Any:
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


def pool_params(pool: Any, oh: int, ow: int) -> tuple[int, int, int, int, int, int, int, int]:
    """(out h, out w, kernel h, kernel w, stride h, stride w, pad top, pad left); identity without a pool."""
    if pool is None:
        return oh, ow, 1, 1, 1, 1, 0, 0
    qh, qw = pooled_dims(oh, ow, pool)
    return qh, qw, pool.kernel[0], pool.kernel[1], pool.strides[0], pool.strides[1], pool.pads[0], pool.pads[1]
