"""Shared pieces of the llvm kernel generators: the `Kernel` record, TIR expression helpers, build helpers.

Every generator in this package is a plain Python function of static shapes, attributes and numpy constants
that returns a :class:`Kernel`: a TVM TIR ``PrimFunc`` plus the packed constant arrays to pass to it.
Parameter order of every PrimFunc: activation input(s), then ``Kernel.constants`` in list order, then the
output. The batch dimension of the activations is symbolic (any batch size runs through the same function).

TVM 0.27 facts the generators rely on (each one cost a miscompile or a slow kernel to find):

* A small scratch buffer (``T.alloc_buffer``, default "global" scope, **under 1024 bytes**) becomes an LLVM
  ``alloca`` that LLVM promotes to registers. Anything larger (or ``scope="local"``) is a
  ``TVMBackendAllocWorkspace`` heap block whose stores LLVM cannot remove, so register tiles are split into
  several buffers of < 1024 bytes.
* A value bound by ``v = expr`` inside a ``T.vectorized`` loop is miscompiled (the vectoriser broadcasts the
  scalar binding). Kernels write explicit vector expressions with ``T.ramp`` instead of vectorized loops.
* Loads from parameter buffers are not hoisted out of loops that store to another parameter (TVM's alias
  metadata is coarse), so loop-invariant scalars are read into 1-element buffers first.
* In TVMScript, ``v = expr`` makes a *mutable* local (a 1-element ``scope="local"`` buffer, i.e. a heap
  workspace allocation per use!). Kernels name expressions with ``v = T.meta_var(expr)`` (pure
  substitution) and keep mutable scalars in 1-element default-scope buffers (allocas).
* Non-Ramp vector indices (gathers) are scalarised by TVM; AVX-512 gathers are slow on Zen anyway, and
  LLVM's SLP vectoriser happily turns independent scalar row dot products into ``vgatherdps`` (2-4x slower).
* LLVM 22's ``llvm.masked.load/store`` take no alignment argument any more (call_llvm_intrin signatures).
* Register tiles and unrolled loops are emitted by plain Python helpers called from inside TVMScript
  (``T.buffer_store``/``T.serial``/``T.If`` build statements at the point of the call), with per-register
  accumulator buffers; TVMScript ``if`` needs a bool (``x is not None``), and a ``T.macro`` only sees the
  names defined above it in its module.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import tvm
from tvm import tirx
from tvm.ir.prim.expr import BitwiseAnd, BitwiseOr
from tvm.script import tirx as T
from tvm.script.ir_builder import IRBuilder

from ....compiler.ir.layer import Epilogue, Kwta
from ...kernel import Kernel

#: float32 lanes of one AVX-512 register; the kernels' vector width.
LANES = 16

#: 16-lane accumulator vectors a register tile may hold, per ISA class: AVX-512 has 32 zmm (one per vector),
#: AVX2 16 ymm (two per vector), SSE2 16 xmm and NEON 32 q registers (four per vector); the rest of the register
#: file holds the broadcast weight, the input loads and addresses.
TILE_VECTORS = {"avx512": 20, "avx2": 6, "sse2": 3, "neon": 6}

#: float32 lanes of one vector register per ISA class (kernels that vectorise in the native width).
NATIVE_LANES = {"avx512": 16, "avx2": 8, "sse2": 4, "neon": 4}

#: int32 value of the sign bit (0x80000000).
SIGN_BIT = -2147483648


def make_kernel(
    prim_func: tirx.PrimFunc,
    constants: Sequence[np.ndarray | None],
    name: str,
    n_inputs: int = 1,
    **info: Any,
) -> Kernel:
    """Attach the global symbol and wrap a PrimFunc into a :class:`Kernel`.

    ``constants`` are the arrays for params ``n_inputs .. n_inputs + len(constants) - 1``. A ``None`` entry
    marks a param the template declares but this specialisation does not use (e.g. the boost of a layer
    without k-WTA): the param is removed from the function, so callers never pass placeholders.
    """
    params = list(prim_func.params)
    drop = {n_inputs + i for i, c in enumerate(constants) if c is None}
    if drop:
        kept = [p for i, p in enumerate(params) if i not in drop]
        prim_func = tirx.PrimFunc(kept, prim_func.body, prim_func.ret_type, prim_func.attrs)
    func = prim_func.with_attr("global_symbol", name)
    arrays = [np.ascontiguousarray(c) for c in constants if c is not None]
    return Kernel(func, arrays, name, dict(info))


#: no fused stages after a conv (NCHW) / linear layer
NO_EPILOGUE = Epilogue(4)
NO_LINEAR_EPILOGUE = Epilogue(2)


def fused_epilogue(epilogue: Epilogue) -> tuple[bool, Kwta | None, int | None, bool]:
    """(relu, kwta, pool window, pool before k-WTA) of an epilogue the fused kernels cover: bias -> ReLU ->
    k-WTA (global, or local on NCHW) with a max-pool of kernel = stride (no padding, floor) before or after it;
    a ValueError for anything else."""
    if epilogue.pool is not None and epilogue.pool_size is None:
        raise ValueError(f"max-pool {epilogue.pool} is not kernel = stride without padding: not fused")
    kwta = epilogue.kwta
    if kwta is not None and not (kwta.is_global or kwta.local):
        raise ValueError(f"k-WTA over axes {list(kwta.over)} of a rank-{kwta.rank} tensor: not fused")
    return epilogue.relu, kwta, epilogue.pool_size, epilogue.pool_first


def for_each_sample(batch: Any, sample: Callable[..., None], *args: Any) -> None:
    """Emit ``sample(*args, b)`` for every sample b of the batch: one sample per iteration of a parallel loop,
    or a plain call for a batch of one (launching the thread pool costs ~25 us with 2 threads, more than a
    small layer of one sample takes). ``sample`` is usually a ``T.macro``."""
    with T.If(batch == 1):
        with T.Then():
            sample(*args, 0)
        with T.Else(), T.parallel(0, batch) as b:
            sample(*args, IRBuilder.name("b", b))


def host_target(mcpu: str | None = None) -> tvm.target.Target:
    """The llvm target of this host (or of ``mcpu`` on the host's architecture)."""
    from ..cpu import resolve_cpu

    return resolve_cpu(mcpu).tvm_target()


def host_isa() -> str:
    """The ISA class of the host CPU (the default of the generators' ``isa`` parameter)."""
    from ..cpu import resolve_cpu

    return resolve_cpu().isa


#: The ISA class the generator being run emits code for (set by :func:`isa_scoped` / :func:`isa_scope`).
_ISA: ContextVar[str | None] = ContextVar("sparsecc_kernel_isa", default=None)

_F = TypeVar("_F", bound=Callable[..., Any])


def kernel_isa(isa: str | None = None) -> str:
    """The ISA class to generate for: ``isa`` if given, else the one of the generator being run (see
    :func:`isa_scoped`), else the host's. Helpers deep inside the TIR macros (e.g. :func:`compress_store`)
    read it here instead of taking an ``isa`` argument through every macro."""
    return isa or _ISA.get() or host_isa()


@contextmanager
def isa_scope(isa: str | None) -> Iterator[str]:
    """Generate for ``isa`` (None: keep the enclosing choice) inside the ``with`` block."""
    resolved = kernel_isa(isa)
    token = _ISA.set(resolved)
    try:
        yield resolved
    finally:
        _ISA.reset(token)


def isa_scoped(fn: _F) -> _F:
    """Decorate a generator: its ``isa=`` keyword (default: the enclosing scope, else the host) holds for
    every helper it calls; a generator that declares an ``isa`` parameter receives the resolved name."""
    takes_isa = "isa" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with isa_scope(kwargs.pop("isa", None)) as isa:
            if takes_isa:
                kwargs["isa"] = isa
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def build(kernels: Sequence[Kernel], target: tvm.target.Target | None = None) -> tvm.runtime.Module:
    """Compile kernels into one runtime module; functions are looked up by ``Kernel.name``."""
    mod = tvm.IRModule({k.name: k.prim_func for k in kernels})
    return tvm.compile(mod, target=target or host_target()).mod


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division."""
    return -(-a // b)


def index_dtype(bound: int) -> np.dtype:
    """The narrowest of uint16 / int32 that holds every index below ``bound``: index streams the kernels read
    per non-zero (CSC rows, tap offsets) take half the cache in 16 bits."""
    return np.dtype(np.uint16 if bound <= np.iinfo(np.uint16).max + 1 else np.int32)


def bit_length(x: int) -> int:
    """Number of bits needed for a non-negative int."""
    return int(x).bit_length()


def vec(buf: Any, start: Any, lanes: int = LANES) -> Any:
    """The contiguous vector ``buf[start : start + lanes]`` as a TIR vector load (1-D buffers)."""
    return buf[tirx.Ramp(start, 1, lanes)]


def strided_vec(buf: Any, start: Any, stride: int, lanes: int) -> Any:
    """``buf[start + stride * i]`` for i < lanes (1-D buffer). Stride 2 is one contiguous load plus a
    deinterleaving shuffle; other strides are left to TVM (scalarised loads)."""
    if lanes == 1:
        return buf[start]
    if stride == 1:
        return buf[tirx.Ramp(start, 1, lanes)]
    if stride == 2:
        wide = buf[tirx.Ramp(start, 1, 2 * lanes)]
        return tirx.Shuffle([wide], [tirx.const(2 * i, "int32") for i in range(lanes)])
    return buf[tirx.Ramp(start, stride, lanes)]


def masked_load(buf: Any, start: Any, valid: int, lanes: int = LANES, dtype: str = "float32") -> Any:
    """``buf[start : start + valid]`` as a ``lanes``-wide vector with zeros beyond ``valid`` lanes; never
    touches memory past the valid lanes (AVX-512 masked load)."""
    if valid >= lanes:
        return buf[tirx.Ramp(start, 1, lanes)]
    mask = tirx.Ramp(tirx.const(0, "int32"), 1, lanes) < tirx.Broadcast(tirx.const(valid, "int32"), lanes)
    return tirx.call_llvm_intrin(
        f"{dtype}x{lanes}",
        "llvm.masked.load",
        tirx.address_of(buf[start]),
        mask,
        tirx.Broadcast(tirx.const(0, dtype), lanes),
    )


def masked_store(buf: Any, start: Any, value: Any, valid: int, lanes: int = LANES) -> None:
    """Store the first ``valid`` lanes of ``value`` at ``buf[start:]`` (AVX-512 masked store); emits a
    statement into the TVMScript function being parsed."""
    from tvm.script import tirx as T

    if valid >= lanes:
        T.buffer_store(buf, value, [tirx.Ramp(start, 1, lanes)])
        return
    mask = tirx.Ramp(tirx.const(0, "int32"), 1, lanes) < tirx.Broadcast(tirx.const(valid, "int32"), lanes)
    T.evaluate(tirx.call_llvm_intrin("void", "llvm.masked.store", value, tirx.address_of(buf[start]), mask))


def copy_run(dst: Any, dst_start: Any, src: Any, src_start: Any, count: int, lanes: int = LANES) -> None:
    """Copy ``count`` contiguous elements ``src[src_start:]`` -> ``dst[dst_start:]`` in ``lanes``-wide vectors.
    A run of at least one vector ends with a full vector that overlaps the one before (masked stores are
    microcoded on AMD's AVX2 CPUs and scalarised on SSE2/NEON); only a shorter run uses a masked copy."""
    if count <= 0:
        return
    if count < lanes:
        masked_store(dst, dst_start, masked_load(src, src_start, count, lanes), count, lanes)
        return
    for j in range(ceil_div(count, lanes)):
        at = min(j * lanes, count - lanes)
        T.buffer_store(dst, src[tirx.Ramp(src_start + at, 1, lanes)], [tirx.Ramp(dst_start + at, 1, lanes)])


def float_key(value: Any, lanes: int = 1) -> Any:
    """Order-preserving uint32 key of float32 value(s): ``a < b`` (IEEE) iff ``key(a) < key(b)``.

    -0.0 is mapped to the key of +0.0, so equal floats get equal keys. NaN is not supported.
    """
    i32 = "int32" if lanes == 1 else f"int32x{lanes}"
    u32 = "uint32" if lanes == 1 else f"uint32x{lanes}"

    def const(v: int) -> Any:
        c = tirx.const(v, "int32")
        return c if lanes == 1 else tirx.Broadcast(c, lanes)

    bits = tirx.reinterpret(i32, value)
    bits = tirx.Select(bits == const(SIGN_BIT), const(0), bits)
    flipped = tirx.bitwise_xor(bits, tirx.bitwise_or(tirx.shift_right(bits, const(31)), const(SIGN_BIT)))
    return tirx.reinterpret(u32, flipped)


def key_value(key: Any) -> Any:
    """The float32 value of a scalar uint32 key of :func:`float_key` (its inverse; the key of -0.0 gives +0.0)."""
    positive = key >= tirx.const(1 << 31, "uint32")
    bits = tirx.Select(positive, tirx.bitwise_xor(key, tirx.const(1 << 31, "uint32")), tirx.bitwise_not(key))
    return tirx.reinterpret("float32", bits)


def np_float_key(x: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`float_key` (for tests and host-side planning)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).copy()
    bits[bits == SIGN_BIT] = 0
    return (bits ^ ((bits >> 31) | np.int32(SIGN_BIT))).view(np.uint32)


def vector_compress(value: Any, mask: Any, lanes: int = LANES, dtype: str = "uint32") -> Any:
    """The lanes of ``value`` selected by ``mask`` packed to the front (AVX-512 ``vpcompress``; LLVM expands
    it on other ISAs). Floats are compressed as their bit patterns: LLVM 22 cannot select the float form
    without AVX-512."""
    if dtype.startswith("float"):
        bits = f"uint{dtype[5:]}"
        packed = vector_compress(tirx.reinterpret(f"{bits}x{lanes}", value), mask, lanes, bits)
        return tirx.reinterpret(f"{dtype}x{lanes}", packed)
    return tirx.call_llvm_pure_intrin(
        f"{dtype}x{lanes}",
        "llvm.experimental.vector.compress",
        value,
        mask,
        tirx.Broadcast(tirx.const(0, dtype), lanes),
    )


def gather_window(buf: Any, start: Any, index: Any, isa: str, lanes: int = LANES) -> Any:
    """``buf[start + index[i]]`` for each lane i, where ``index`` is an int32 vector of offsets below ``lanes``
    into the window ``buf[start : start + lanes]``. AVX-512: one window load and one ``vpermps`` (zmm); AVX2:
    ``vpermps`` (ymm) of both window halves and a blend; other ISAs: lane-by-lane loads (correct everywhere)."""
    if isa == "avx512" and lanes == 16:
        window = buf[tirx.Ramp(start, 1, lanes)]
        return tirx.call_llvm_pure_intrin(f"float32x{lanes}", "llvm.x86.avx512.permvar.sf.512", window, index)
    if isa == "avx2" and lanes % 8 == 0:
        const = [tirx.const(i, "int32") for i in range(lanes)]
        halves = [buf[tirx.Ramp(start + h, 1, 8)] for h in range(0, lanes, 8)]
        parts = []
        for h in range(0, lanes, 8):
            ix = tirx.Shuffle([index], const[h : h + 8])
            low = tirx.bitwise_and(ix, tirx.Broadcast(tirx.const(7, "int32"), 8))
            picked = [tirx.call_llvm_pure_intrin("float32x8", "llvm.x86.avx2.permps", half, low) for half in halves]
            value = picked[0]
            for j in range(1, len(picked)):
                value = tirx.Select(ix >= tirx.Broadcast(tirx.const(8 * j, "int32"), 8), picked[j], value)
            parts.append(value)
        return parts[0] if len(parts) == 1 else tirx.Shuffle(parts, const)
    const = [tirx.const(i, "int32") for i in range(lanes)]
    loads = [buf[start + tirx.Shuffle([index], [const[i]])] for i in range(lanes)]
    return tirx.Shuffle(loads, const)


def reduce_add(value: Any) -> Any:
    """Horizontal sum of an int32 vector."""
    return tirx.call_llvm_pure_intrin("int32", "llvm.vector.reduce.add", value)


def mask_count(mask: Any, lanes: int = LANES) -> Any:
    """Number of true lanes of a boolean vector (kmov + popcnt)."""
    return reduce_add(tirx.Cast(f"int32x{lanes}", mask))


def compress_table_size() -> int:
    """Bytes of the left-pack table :func:`compress_store` needs on this ISA (1 = no table)."""
    return 256 * 8 if kernel_isa() == "avx2" else 1


#: the comparison and boolean-logic node types :func:`_half` narrows through
_MASK_NODES = (tirx.LT, tirx.LE, tirx.GT, tirx.GE, tirx.EQ, tirx.NE, tirx.And, tirx.Or, BitwiseAnd, BitwiseOr)


def _half(expr: Any, half: int) -> Any:
    """Lanes 8*half .. 8*half+7 of a 16-lane expression; a boolean mask is narrowed through its logic down to its
    comparisons, so that LLVM compares 8-lane halves and reads each result with one ``vmovmskps`` (a shuffle of
    a 16-lane mask is lowered through pack instructions instead)."""
    if isinstance(expr, tirx.Broadcast):
        return tirx.Broadcast(expr.value, 8)
    if isinstance(expr, _MASK_NODES):
        return type(expr)(_half(expr.a, half), _half(expr.b, half))
    if isinstance(expr, tirx.Not):
        return tirx.Not(_half(expr.a, half))
    return tirx.Shuffle([expr], [tirx.const(i, "int32") for i in range(8 * half, 8 * half + 8)])


def _movemask8(mask: Any, half: int) -> Any:
    """int32 bit mask (0..255) of lanes 8*half .. 8*half+7 of a 16-lane boolean vector (``vmovmskps``)."""
    minus_one, zero = (tirx.Broadcast(tirx.const(v, "int32"), 8) for v in (-1, 0))
    ones = tirx.Select(_half(mask, half), minus_one, zero)
    return tirx.call_llvm_pure_intrin("int32", "llvm.x86.avx.movmsk.ps.256", tirx.reinterpret("float32x8", ones))


def _lane(value: Any, j: int) -> Any:
    return tirx.Shuffle([value], [tirx.const(j, "int32")])


def reduce_max(value: Any, dtype: str = "uint32") -> Any:
    """Horizontal maximum of an unsigned/float vector."""
    name = "llvm.vector.reduce.umax" if dtype.startswith("uint") else "llvm.vector.reduce.fmax"
    return tirx.call_llvm_pure_intrin(dtype, name, value)


def reduce_min(value: Any, dtype: str = "uint32") -> Any:
    """Horizontal minimum of an unsigned/float vector."""
    name = "llvm.vector.reduce.umin" if dtype.startswith("uint") else "llvm.vector.reduce.fmin"
    return tirx.call_llvm_pure_intrin(dtype, name, value)


def sample_bracket(n: int, k: int, samples: int) -> tuple[int, int]:
    """Ranks (1-based, from the top) in a strided sample that bracket the k-th largest of n with margin.

    The sample rank of the true threshold is ~Binomial(samples, k/n); the bracket is 4 standard deviations
    plus 2 wide on each side, so a miss (handled exactly by a slow fallback) is very rare.
    """
    p = k / n
    centre = p * samples
    delta = 4.0 * math.sqrt(max(samples * p * (1.0 - p), 1.0)) + 2.0
    hi_rank = max(1, math.floor(centre - delta))
    lo_rank = min(samples, math.ceil(centre + delta))
    return hi_rank, lo_rank


def transpose_square(rows: Sequence[Any], lanes: int = LANES) -> list[Any]:
    """Transpose a ``lanes x lanes`` block held in ``lanes`` vectors: out[c][r] = rows[r][c].

    log2(lanes) stages of 2-input shuffles that swap off-diagonal sub-blocks (8, 4, 2, 1 wide for 16 lanes);
    each shuffle is one AVX-512 permute (vshuff64x2 / vshuff32x4 / vshufpd / vpermt2ps): 64 for 16x16.
    """
    vs = list(rows)
    h = lanes // 2
    while h >= 1:
        out = list(vs)
        for i in range(lanes):
            if i & h:
                continue
            j = i | h
            # element c of the 2-input shuffle: c < lanes -> vs[i][c], else vs[j][c - lanes]
            idx_i = [c if not (c & h) else lanes + c - h for c in range(lanes)]
            idx_j = [c + h if not (c & h) else lanes + c for c in range(lanes)]
            out[i] = tirx.Shuffle([vs[i], vs[j]], [tirx.const(x, "int32") for x in idx_i])
            out[j] = tirx.Shuffle([vs[i], vs[j]], [tirx.const(x, "int32") for x in idx_j])
        vs = out
        h //= 2
    return vs


@T.macro
def fill_compress_table(table):
    """Fill the AVX2 left-pack table: entry m (8 bytes) lists the set bits of the 8-bit mask m, lowest first
    (the lanes ``vpermps`` moves to the front). No-op on other ISAs."""
    if kernel_isa() == "avx2":
        pos = T.alloc_buffer((1,), "int32")
        for z in range(256):
            table[T.ramp(z * 8, 1, 8)] = T.broadcast(T.uint8(0), 8)
        for m in range(256):
            pos[0] = m * 8
            for i in range(8):
                table[pos[0]] = T.Cast("uint8", i)
                pos[0] = pos[0] + T.bitwise_and(T.shift_right(m, i), 1)


def _left_pack_avx2(dst, pos, bits, value, mask, table, dtype) -> None:
    """Emit the AVX2 compress of :func:`compress_store`: per 8-lane half a ``vmovmskps``, a table lookup and a
    ``vpermps``, an 8-lane store and the count."""
    for h in range(2):
        T.buffer_store(bits, _movemask8(mask, h), [0])
        half = tirx.Shuffle([value], [tirx.const(8 * h + i, "int32") for i in range(8)])
        perm = tirx.Cast("int32x8", table[tirx.Ramp(bits[0] * 8, 1, 8)])
        packed = tirx.call_llvm_pure_intrin(
            "float32x8", "llvm.x86.avx2.permps", tirx.reinterpret("float32x8", half), perm
        )
        T.buffer_store(dst, tirx.reinterpret(f"{dtype}x8", packed), [tirx.Ramp(pos[0], 1, 8)])
        T.buffer_store(pos, pos[0] + tirx.popcount(bits[0]), [0])


def _left_pack_scalar(dst, pos, value, mask) -> None:
    """Emit the portable compress of :func:`compress_store`: one scalar store per lane, advancing by its bit."""
    for j in range(LANES):
        T.buffer_store(dst, _lane(value, j), [pos[0]])
        T.buffer_store(pos, pos[0] + tirx.Cast("int32", _lane(mask, j)), [0])


@T.macro
def compress_store(dst, pos, value, mask, table, dtype):
    """Store the lanes of the 16-lane ``value`` selected by ``mask`` packed at ``dst[pos[0]:]`` and advance
    ``pos[0]`` by their count. AVX-512: one ``vpcompress``; AVX2: per 8-lane half a ``vmovmskps``, a
    table lookup (``table`` from :func:`fill_compress_table`) and a ``vpermps``; other ISAs: one scalar store
    per lane. Up to 16 elements past the new ``pos[0]`` may be written (``dst`` needs that slack).

    In-place compaction (``value``/``mask`` re-read ``dst`` at a position >= ``pos[0]``) is safe: every part is
    counted before its store, and a store never reaches the lanes still to be read."""
    if kernel_isa() == "avx512":
        kept = T.alloc_buffer((1,), "int32")
        kept[0] = mask_count(mask)
        dst[T.ramp(pos[0], 1, LANES)] = vector_compress(value, mask, LANES, dtype)
        pos[0] = pos[0] + kept[0]
    elif kernel_isa() == "avx2":
        bits = T.alloc_buffer((1,), "int32")
        _left_pack_avx2(dst, pos, bits, value, mask, table, dtype)
    else:
        _left_pack_scalar(dst, pos, value, mask)
