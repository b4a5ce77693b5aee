"""IEEE guard of the llvm target: specialised kernels give the interpreter's inf/NaN results.

The specialised kernels are exact on finite inputs, but not on non-finite ones: the weight-sparse and
activation-sparse kernels skip zero weights and zero activations, so they never compute ``0 * inf = NaN``,
and the fused epilogues rank keys without NaN. So every specialised kernel call is wrapped in a small private
Relax function::

    guarded(x) = if all_finite(x): fast_kernel(x, constants...) else: exact(x)

``all_finite`` is one vectorised pass over the layer's input (OR of the exponent bits, :func:`finite_guard`);
``exact`` is the target-independent generic lowering of the same op (dense weights, IEEE epilogue: see
``targets/relax_lowering.py``), which runs only when the input holds an inf or a NaN. The common case pays
one pass over the input plus one VM call per layer. ``fast_math=True`` drops the guards (documented, opt-in).

Not covered by the guard: a non-finite value born *inside* a layer from finite inputs (float overflow of a
sum) reaches that layer's fused epilogue on the fast path; the next layer's guard sees it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tvm import relax, tirx
from tvm.script import tirx as T

from ...compiler.errors import CompileError
from ...compiler.ir import ops
from ...compiler.ir.core import Operation, Value
from ...compiler.ir.ops.nn import conv2d_output_shape, linear_output_shape
from ...compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from ...compiler.ir.types import TensorType
from ..finite_constants import refuse_non_finite_constants as refuse_constants
from ..relax_lowering import (
    KernelSet,
    RelaxLowering,
    conv2d_expr,
    kwta_expr,
    linear_expr,
    pool_expr,
    pooled_shape,
    relu_expr,
)
from .kernels.common import LANES

#: int32 mask of the exponent bits of a float32: all set means inf or NaN
EXPONENT = 0x7F800000


def finite_guard(sample_shape: Sequence[int], name: str) -> tirx.PrimFunc:
    """A PrimFunc ``(x, ok)``: ``ok[()] = every element of x (batch symbolic, then sample_shape) is finite``.

    Vectorised OR-free form: a running lane-wise maximum of ``bits & EXPONENT`` (16 lanes, then the tail),
    compared once with the all-ones exponent at the end."""
    shape = tuple(int(d) for d in sample_shape)
    n = math.prod(shape)
    full = n // LANES
    tail = n - full * LANES
    lanes = LANES

    def vmask(v):
        bits = tirx.reinterpret(f"int32x{lanes}", v)
        return tirx.bitwise_and(bits, tirx.Broadcast(tirx.const(EXPONENT, "int32"), lanes))

    @T.prim_func
    def guard(x_handle: T.handle, ok: T.Buffer((), "bool")):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, *shape), "float32")
        xf = T.decl_buffer((batch * n,), "float32", data=X.data)
        acc = T.alloc_buffer((lanes,), "int32")
        last = T.alloc_buffer((1,), "int32")
        acc[T.ramp(0, 1, lanes)] = T.broadcast(T.int32(0), lanes)
        last[0] = T.int32(0)
        for b in range(batch):
            for i in range(full):
                acc[T.ramp(0, 1, lanes)] = T.max(acc[T.ramp(0, 1, lanes)], vmask(xf[T.ramp(b * n + i * lanes, 1,
                                                                                              lanes)]))
            for j in range(tail):
                last[0] = T.max(last[0], T.bitwise_and(T.reinterpret("int32", xf[b * n + full * lanes + j]),
                                                       T.int32(EXPONENT)))
        ok[()] = T.max(T.call_llvm_pure_intrin("int32", "llvm.vector.reduce.smax", acc[T.ramp(0, 1, lanes)]),
                       last[0]) < T.int32(EXPONENT)

    return guard.with_attr("global_symbol", name)


def np_all_finite(x: np.ndarray) -> bool:
    """numpy twin of :func:`finite_guard` (for tests)."""
    return bool(np.isfinite(x).all())


#: kernel families that form every product of the dense weight, so that ``0 * inf = NaN`` happens as in the
#: interpreter; without an epilogue (ReLU, k-WTA and max-pool rank or compare, and assume no NaN) they need no guard
DENSE_FAMILIES = ("conv2d_dense", "linear_dense")


def needs_guard(op: Operation, family: str | None) -> bool:
    """Whether a specialised kernel of ``family`` for ``op`` can differ from the interpreter on inf/NaN."""
    epilogue = op.epilogue if isinstance(op, ops.FusedLayer) else ()
    return not (family in DENSE_FAMILIES and not epilogue)


def refuse_non_finite_constants(op: ops.FusedLayer | ops.KWinners) -> None:
    """The specialised kernels skip zero activations, so ``0 * inf`` of an infinite weight would be lost:
    weights, biases and boost factors holding inf or NaN are a CompileError naming the layer."""
    refuse_constants(op, "llvm")


def guarded_call(lo: RelaxLowering, op: ops.FusedLayer | ops.KWinners, prim_func: tirx.PrimFunc, name: str,
                 constants: Sequence[np.ndarray]) -> list[relax.Expr]:
    """Emit ``op`` as a call of the guarded function (see module docstring) around the specialised kernel
    ``prim_func`` (params: the op's input, ``constants``, the output)."""
    x = op.input
    out_type = op.result.type
    fast = lo.bb.add_func(prim_func.with_attr("op_pattern", 8), name)
    lo.kernel_names.append(fast.name_hint)
    exact = _exact_function(lo, op, f"{name}_exact")
    check = lo.bb.add_func(finite_guard(x.type.shape[1:], f"{name}_finite"), f"{name}_finite")  # type: ignore[arg-type]

    batch = tirx.Var("n", "int64")
    param = relax.Var("x", lo.struct(x.type, batch))
    out_struct = lo.struct(out_type, batch)
    builder = relax.BlockBuilder()
    with builder.function(f"{name}_guarded", [param], private=True):
        ok = builder.emit(relax.call_tir(check, [param], relax.TensorType((), "bool")), name_hint="finite")
        fast_y = relax.Var("fast", out_struct)
        fast_call = relax.call_tir(fast, [param, *(lo.const(c) for c in constants)], out_struct)
        exact_y = relax.Var("exact", out_struct)
        branch = relax.If(ok, relax.SeqExpr([relax.BindingBlock([relax.VarBinding(fast_y, fast_call)])], fast_y),
                          relax.SeqExpr([relax.BindingBlock([relax.VarBinding(exact_y, relax.Call(exact, [param]))])],
                                        exact_y))
        y = builder.emit(branch, name_hint="y")
        builder.emit_func_output(y)
    guarded = lo.bb.add_func(builder.get()[f"{name}_guarded"], f"{name}_guarded")
    return [lo.emit(relax.Call(guarded, [lo.value(x)]), op.result.name)]


def _exact_function(lo: RelaxLowering, op: ops.FusedLayer | ops.KWinners, name: str) -> relax.GlobalVar:
    """A private Relax function of the op's input that computes the op exactly (IEEE): the dense conv/linear
    of the generic lowering, then the epilogue stages in order (NaN-keeping ReLU and max-pool of the generic
    lowering, k-WTA by :func:`kwta_exact`), added to ``lo``'s module."""
    x = op.input
    sub = RelaxLowering(lo.module, KernelSet(), isa=lo.isa)
    param = relax.Var("x", sub.struct(x.type))
    sub.env[id(x)] = param
    with sub.bb.function(name, [param], private=True):
        with sub.bb.dataflow():
            y = _exact_body(lo, sub, op, param, name)
            out = sub.bb.emit_output(y)
        sub.bb.emit_func_output(out)
    return lo.bb.add_func(sub.bb.get()[name], name)


def _exact_body(lo: RelaxLowering, sub: RelaxLowering, op: ops.FusedLayer | ops.KWinners, x: relax.Expr,
                name: str) -> relax.Expr:
    """Emit the exact computation of ``op`` into ``sub``; TIR functions go into ``lo``'s module."""
    boost = op.boost
    x_type = op.input.type
    if isinstance(op, ops.KWinners):
        return _kwta_call(lo, sub, x, x_type, op.k, op.over, op.ties, boost, f"{name}_kwta")
    if isinstance(op, ops.SparseConv2D):
        y = sub.emit(conv2d_expr(sub, x, op))
        shape = conv2d_output_shape(op)
    elif isinstance(op, ops.SparseLinear):
        y = sub.emit(linear_expr(sub, x, op))
        shape = linear_output_shape(op)
    else:
        (y,) = sub.lower(op)
        return y
    current = TensorType(shape, op.result.type.dtype)
    for i, stage in enumerate(op.epilogue):
        if isinstance(stage, ReluStage):
            y = sub.emit(relu_expr(y))
        elif isinstance(stage, KWTAStage):
            y = _kwta_call(lo, sub, y, current, stage.k, stage.over, stage.ties, boost, f"{name}_kwta{i}")
        elif isinstance(stage, MaxPoolStage):
            pooled = TensorType(pooled_shape(current.shape, stage), current.dtype)
            (kh, kw), (sh, sw) = stage.kernel, stage.strides
            if kh == kw == sh == sw and not any(stage.pads) and not stage.ceil_mode and None not in shape[1:]:
                func = maxpool_exact(tuple(current.shape[1:]), kh, f"{name}_pool{i}")  # type: ignore[arg-type]
                gv = lo.bb.add_func(func.with_attr("op_pattern", 8), f"{name}_pool{i}")
                y = sub.emit(relax.call_tir(gv, [y], sub.struct(pooled, sub.batch_of(y))))
            else:
                y = sub.emit(pool_expr(y, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, "max"))
            current = pooled
    return y


def _boost(value: Value) -> np.ndarray:
    if not isinstance(value.owner, ops.Constant):
        raise CompileError("the IEEE guard needs constant boost factors", op_type=value.owner.name)
    return np.asarray(value.owner.value, np.float32)


def _kwta_call(lo: RelaxLowering, sub: RelaxLowering, x: relax.Expr, x_type: TensorType, k: int,
               over: tuple[int, ...], ties: str, boost_value: Value | None, name: str) -> relax.Expr:
    """k-WTA through :func:`kwta_exact` where the selection is global or per pixel with per-channel boost
    factors; otherwise the generic lowering (NaN ranked above +inf there too)."""
    boost = None if boost_value is None else _boost(boost_value)
    shape = tuple(x_type.shape[1:])
    rank = x_type.rank
    local = over == (1,) and rank == 4
    per_channel = boost is None or boost.size == shape[0]
    if any(d is None for d in shape) or not per_channel or not (over == tuple(range(1, rank)) or local):
        return sub.emit(kwta_expr(sub, x, x_type, boost_value, k, over, ties))
    func = kwta_exact(shape, k, boost, local, ties == "break", name)  # type: ignore[arg-type]
    consts = [] if boost is None else [sub.const(boost.reshape(-1).astype(np.float32))]
    gv = lo.bb.add_func(func.with_attr("op_pattern", 8), name)
    return sub.emit(relax.call_tir(gv, [x, *consts], sub.struct(x_type, sub.batch_of(x))))


#: the key of every NaN (above +inf: NaN ranks above +inf in k-WTA, as in TopK)
NAN_KEY = 0xFFFFFFFF


def kwta_exact(shape: tuple[int, ...], k: int, boost: np.ndarray | None, local: bool, break_ties: bool,
               name: str) -> tirx.PrimFunc:
    """Exact k-WTA with IEEE special values, plain scalar loops (the slow path of the guard).

    Selection groups: the whole sample (global) or the channels of each pixel (``local``, NCHW). Keys are
    order-preserving uint32 images of the boosted values (-0.0 as +0.0, every NaN above +inf); the k-th
    largest key is found bit by bit (32 counting passes). Ties at the threshold survive, or with
    ``break_ties`` the lower indices do; a NaN threshold (k or more NaN) keeps every unit (the interpreter's
    rule: nothing is below NaN). Params: ``(x, [boost], y)``; boost per channel (per unit for (N,))."""
    n = math.prod(shape)
    channels = shape[0]
    hw = n // channels
    groups, size, stride = (hw, channels, hw) if local else (1, n, 1)
    nb = channels if boost is not None else 1
    with_boost = boost is not None

    def key(v):
        bits = T.reinterpret("int32", v)
        bits = T.Select(bits == T.int32(-2147483648), T.int32(0), bits)
        flipped = T.bitwise_xor(bits, T.bitwise_or(T.shift_right(bits, T.int32(31)), T.int32(-2147483648)))
        return T.Select(T.isnan(v), T.uint32(NAN_KEY), T.reinterpret("uint32", flipped))

    def boosted(xs, bst, g, e):
        v = xs[(g if local else 0) + e * stride]
        if with_boost:
            return v * bst[e if local else e // (hw if len(shape) == 3 else 1)]
        return v

    @T.prim_func
    def exact(x_handle: T.handle, boost_buf: T.Buffer((nb,), "float32"), y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, *shape), "float32")
        Y = T.match_buffer(y_handle, (batch, *shape), "float32")
        thr = T.alloc_buffer((1,), "uint32")
        count = T.alloc_buffer((1,), "int32")
        above = T.alloc_buffer((1,), "int32")
        for b in range(batch):
            xs = T.decl_buffer((n,), "float32", data=X.data, elem_offset=b * n)
            ys = T.decl_buffer((n,), "float32", data=Y.data, elem_offset=b * n)
            for g in range(groups):
                thr[0] = T.uint32(0)
                for bit in range(32):
                    count[0] = 0
                    for e in range(size):
                        if key(boosted(xs, boost_buf, g, e)) >= T.bitwise_or(
                                thr[0], T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit))):
                            count[0] = count[0] + 1
                    if count[0] >= k:
                        thr[0] = T.bitwise_or(thr[0], T.shift_left(T.uint32(1), T.Cast("uint32", 31 - bit)))
                above[0] = 0
                if break_ties:
                    for e in range(size):
                        if key(boosted(xs, boost_buf, g, e)) > thr[0]:
                            above[0] = above[0] + 1
                for e in range(size):
                    kv = T.meta_var(key(boosted(xs, boost_buf, g, e)))
                    at = T.meta_var((g if local else 0) + e * stride)
                    if break_ties:
                        if kv > thr[0]:
                            ys[at] = xs[at]
                        elif kv == thr[0] and above[0] < k:
                            ys[at] = xs[at]
                            above[0] = above[0] + 1
                        else:
                            ys[at] = T.float32(0)
                    elif kv >= thr[0] or thr[0] == T.uint32(NAN_KEY):
                        ys[at] = xs[at]
                    else:
                        ys[at] = T.float32(0)

    func = exact
    if not with_boost:
        params = list(func.params)
        func = tirx.PrimFunc([params[0], params[2]], func.body, func.ret_type, func.attrs)
    return func.with_attr("global_symbol", name)


def maxpool_exact(shape: tuple[int, int, int], size: int, name: str) -> tirx.PrimFunc:
    """Max-pool NCHW with kernel = stride = ``size`` (floor), plain loops; a window holding a NaN gives NaN
    (the interpreter's rule). Params ``(x, y)``."""
    c, h, w = shape
    ho, wo = h // size, w // size

    @T.prim_func
    def pool(x_handle: T.handle, y_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int32()
        X = T.match_buffer(x_handle, (batch, c, h, w), "float32")
        Y = T.match_buffer(y_handle, (batch, c, ho, wo), "float32")
        m = T.alloc_buffer((1,), "float32")
        for b, ch, i, j in T.grid(batch, c, ho, wo):
            m[0] = X[b, ch, i * size, j * size]
            for di, dj in T.grid(size, size):
                v = T.meta_var(X[b, ch, i * size + di, j * size + dj])
                m[0] = T.Select(T.isnan(m[0]), m[0], T.Select(T.Or(T.isnan(v), v > m[0]), v, m[0]))
            Y[b, ch, i, j] = m[0]

    return pool.with_attr("global_symbol", name)
