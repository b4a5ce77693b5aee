"""The reference interpreter: numpy implementations that define what every op computes.

``interpret(module, {name: array})`` runs any module at any stage of the pipeline and returns the outputs
in the function's output order. Every op computes in its declared dtype (float32 stays float32), and each
result is checked against its declared type. Users register implementations for their own ops with
:func:`implements`.

k-WTA (``sparse.kwta`` and the ``#epi.kwta`` stage of fused ops) follows DESIGN.md §2 exactly; a
``kwta_observer`` sees every selection (the boosted values per group, k and the tie mode), which the
tie-aware comparison uses to find near-ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError, SparseccError
from .feeds import check_feeds
from .ir import ops
from .ir.core import Module, Operation, Value
from .ir.layer import Epilogue
from .ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from .ir.shapes import normalize_axis

Impl = Callable[..., Any]
KWTAObserver = Callable[[Operation, np.ndarray, int, str], None]
_IMPLS: dict[type[Operation], Impl] = {}


def implements(op_class: type[Operation]) -> Callable[[Impl], Impl]:
    """Decorator registering ``fn(op, ctx, *operand_slots)`` as the meaning of ``op_class``.

    ``operand_slots`` follow the op's declaration: arrays, None for an absent optional operand, a list of
    arrays for a variadic one. Return an array, or a tuple of arrays for several results.
    """

    def wrap(fn: Impl) -> Impl:
        _IMPLS[op_class] = fn
        return fn

    return wrap


class Context:
    """Per-run state passed to implementations (only the k-WTA observer today)."""

    def __init__(self, kwta_observer: KWTAObserver | None) -> None:
        self.kwta_observer = kwta_observer


def check_inputs(module: Module, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Validate a feed against the function's signature; returns the arrays by argument name."""
    signature = [(a.name or "", a.type.shape, a.type.numpy_dtype) for a in module.func.args]
    return dict(zip((name for name, _, _ in signature), check_feeds(signature, inputs), strict=True))


def evaluate_op(op: Operation, operands: list[Any]) -> tuple[np.ndarray, ...]:
    """Run one op on concrete operand slots (as ``op.operand_slots()`` orders them); used to fold constants."""
    impl = _IMPLS.get(type(op))
    if impl is None:
        raise SparseccError(f"the interpreter has no implementation of {op.name}", op_type=op.name)
    out = impl(op, Context(None), *operands)
    return tuple(np.asarray(a) for a in (out if isinstance(out, tuple) else (out,)))


def interpret(module: Module, inputs: Mapping[str, np.ndarray], *,
              kwta_observer: KWTAObserver | None = None) -> list[np.ndarray]:
    """Run ``module`` on numpy ``inputs`` (by argument name); returns the outputs in order."""
    feed = check_inputs(module, inputs)
    ctx = Context(kwta_observer)
    env: dict[int, np.ndarray] = {id(a): feed[a.name] for a in module.func.args}  # type: ignore[index]

    def get(slot: Value | tuple[Value, ...] | None) -> Any:
        if slot is None:
            return None
        if isinstance(slot, tuple):
            return [env[id(v)] for v in slot]
        return env[id(slot)]

    func = module.func
    last_use = {id(v): i for i, op in enumerate(func.ops) for v in op.operand_values}
    keep = {id(v) for v in func.outputs}
    for i, op in enumerate(func.ops):
        impl = _IMPLS.get(type(op))
        if impl is None:
            raise SparseccError(f"the interpreter has no implementation of {op.name}", op_type=op.name)
        out = impl(op, ctx, *(get(s) for s in op.operand_slots()))
        results = out if isinstance(out, tuple) else (out,)
        for value, array in zip(op.results, results, strict=True):
            array = np.asarray(array)
            if not value.type.accepts(array.shape, array.dtype):
                raise SparseccError(
                    f"interpreter produced {array.dtype}{list(array.shape)} for %{value.name} : {value.type}",
                    op_type=op.name,
                )
            env[id(value)] = array
        for operand in op.operand_values:  # free what no later op needs
            if last_use[id(operand)] == i and id(operand) not in keep:
                env.pop(id(operand), None)
    return [env[id(v)] for v in module.func.outputs]


# -- constants and elementwise ------------------------------------------------------------------------------
@implements(ops.Constant)
def _constant(op: ops.Constant, ctx: Context) -> np.ndarray:
    return op.value


def _typed(op: Operation, array: Any) -> np.ndarray:
    return np.asarray(array).astype(op.result.type.numpy_dtype, copy=False)


def _broadcastable(op: Operation, *arrays: Any) -> tuple[Any, ...]:
    """The operands, when their run-time shapes broadcast (dynamic sizes can disagree); else InputError."""
    try:
        np.broadcast_shapes(*(np.shape(a) for a in arrays))
    except ValueError:
        shapes = " and ".join(str(list(np.shape(a))) for a in arrays)
        raise InputError(f"operands of shapes {shapes} do not broadcast at run time", op_type=op.name) from None
    return arrays


for _cls, _fn in [
    (ops.Add, np.add), (ops.Sub, np.subtract), (ops.Mul, np.multiply),
    (ops.Less, np.less), (ops.LessEqual, np.less_equal), (ops.Greater, np.greater),
    (ops.GreaterEqual, np.greater_equal), (ops.Equal, np.equal),
    (ops.And, np.logical_and), (ops.Or, np.logical_or),
]:
    implements(_cls)(lambda op, ctx, a, b, _fn=_fn: _typed(op, _fn(*_broadcastable(op, a, b))))

for _cls, _fn in [(ops.Exp, np.exp), (ops.Neg, np.negative), (ops.Sqrt, np.sqrt), (ops.Not, np.logical_not)]:
    implements(_cls)(lambda op, ctx, x, _fn=_fn: _typed(op, _fn(x)))


@implements(ops.Div)
def _div(op: Operation, ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _typed(op, np.trunc(np.true_divide(a, b)))
    return _typed(op, np.divide(a, b))


@implements(ops.Cast)
def _cast(op: Operation, ctx: Context, x: np.ndarray) -> np.ndarray:
    return x.astype(op.result.type.numpy_dtype)


@implements(ops.Where)
def _where(op: Operation, ctx: Context, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _typed(op, np.where(*_broadcastable(op, cond, a, b)))


@implements(ops.MatMul)
def _matmul(op: Operation, ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _typed(op, np.matmul(a, b))


# -- neural-network ops -------------------------------------------------------------------------------------
def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: Sequence[int],
           pads: Sequence[int], dilations: Sequence[int], groups: int) -> np.ndarray:
    """NCHW x OIHW cross-correlation with zero padding, in the input's dtype."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    dh, dw = dilations
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]  # (N, C, OH, OW, KH, KW)
    oh, ow = win.shape[2], win.shape[3]
    og = o // groups
    outs = []
    for g in range(groups):
        xg = win[:, g * cg : (g + 1) * cg]  # (N, cg, OH, OW, KH, KW)
        cols = xg.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, cg * kh * kw)
        wg = w[g * og : (g + 1) * og].reshape(og, cg * kh * kw)
        outs.append((cols @ wg.T).reshape(n, oh, ow, og))
    y = np.concatenate(outs, axis=3).transpose(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.reshape(1, o, 1, 1)
    return np.ascontiguousarray(y.astype(x.dtype, copy=False))


def pool2d(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
           ceil_mode: bool, mode: str, count_include_pad: bool = False) -> np.ndarray:
    """Max or average pooling over H, W (NCHW); padding never wins a max."""
    from .ir.shapes import window_output_dim

    _, _, h, w = x.shape
    oh = window_output_dim(h, kernel[0], strides[0], pads[0], pads[2], 1, ceil_mode)
    ow = window_output_dim(w, kernel[1], strides[1], pads[1], pads[3], 1, ceil_mode)
    assert oh is not None and ow is not None
    # pad the end so that ceil-mode windows exist; the extra cells never count
    extra_h = max(0, (oh - 1) * strides[0] + kernel[0] - (h + pads[0] + pads[2]))
    extra_w = max(0, (ow - 1) * strides[1] + kernel[1] - (w + pads[1] + pads[3]))
    widths = ((0, 0), (0, 0), (pads[0], pads[2] + extra_h), (pads[1], pads[3] + extra_w))
    if mode == "max":
        xp = np.pad(x, widths, constant_values=-np.inf)
        win = np.lib.stride_tricks.sliding_window_view(xp, tuple(kernel), axis=(2, 3))
        return np.ascontiguousarray(win[:, :, :: strides[0], :: strides[1]][:, :, :oh, :ow].max(axis=(4, 5)))
    xp = np.pad(x, widths)
    win = np.lib.stride_tricks.sliding_window_view(xp, tuple(kernel), axis=(2, 3))
    total = win[:, :, :: strides[0], :: strides[1]][:, :, :oh, :ow].sum(axis=(4, 5), dtype=np.float64)
    inside = np.zeros((1, 1, h + sum(widths[2]), w + sum(widths[3])))
    if count_include_pad:
        inside[:, :, : h + pads[0] + pads[2], : w + pads[1] + pads[3]] = 1
    else:
        inside[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + w] = 1
    cwin = np.lib.stride_tricks.sliding_window_view(inside, tuple(kernel), axis=(2, 3))
    count = cwin[:, :, :: strides[0], :: strides[1]][:, :, :oh, :ow].sum(axis=(4, 5))
    return np.ascontiguousarray((total / count).astype(x.dtype))


def kwta(x: np.ndarray, boost: np.ndarray | None, k: int, over: Sequence[int], ties: str,
         observe: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """k-winners-take-all over axes ``over`` (DESIGN.md §2); see ``sparse.kwta``."""
    boosted = x * boost if boost is not None else x
    boosted = boosted.astype(x.dtype, copy=False)
    rest = [a for a in range(x.ndim) if a not in over]
    perm = rest + list(over)
    moved = np.transpose(boosted, perm)
    group = int(np.prod([x.shape[a] for a in over]))
    groups = moved.reshape(-1, group)
    if observe is not None:
        observe(groups)
    if ties == "keep":
        threshold = np.partition(groups, group - k, axis=1)[:, group - k]  # NaN ranks above +inf
        keep = ~(groups < threshold[:, None])  # a NaN threshold (k or more NaN) keeps every unit
    else:
        order = descending_order(groups, axis=1)
        keep = np.zeros(groups.shape, dtype=bool)
        np.put_along_axis(keep, order[:, :k], True, axis=1)
    keep = np.transpose(keep.reshape(moved.shape), np.argsort(perm))
    return np.where(keep, x, np.zeros((), dtype=x.dtype))


def _observer(ctx: Context, op: Operation, k: int, ties: str) -> Callable[[np.ndarray], None] | None:
    if ctx.kwta_observer is None:
        return None
    observer = ctx.kwta_observer
    return lambda groups: observer(op, groups, k, ties)


@implements(ops.KWinners)
def _kwta(op: ops.KWinners, ctx: Context, x: np.ndarray, boost: np.ndarray | None) -> np.ndarray:
    k, over, ties = op.k, op.over, op.ties
    return kwta(x, boost, k, over, ties, _observer(ctx, op, k, ties))


def _conv_attrs(op: ops.ConvLike) -> tuple:
    return op.strides, op.pads, op.dilations, op.groups


@implements(ops.Conv2D)
def _conv2d(op: ops.Conv2D, ctx: Context, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return conv2d(x, w, bias, *_conv_attrs(op))


def linear(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = x @ w.T
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype, copy=False)


@implements(ops.Linear)
def _linear(op: Operation, ctx: Context, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return linear(x, w, bias)


def _per_channel(v: np.ndarray, rank: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (rank - 2))


@implements(ops.BatchNorm)
def _batch_norm(op: ops.BatchNorm, ctx: Context, x: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    eps = np.asarray(op.epsilon, dtype=x.dtype)
    r = x.ndim
    y = (x - _per_channel(mean, r)) / np.sqrt(_per_channel(var, r) + eps)
    y = y * _per_channel(scale, r) + _per_channel(bias, r)
    return _typed(op, y)


@implements(ops.ChannelAffine)
def _channel_affine(op: Operation, ctx: Context, x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return _typed(op, x * _per_channel(scale, x.ndim) + _per_channel(shift, x.ndim))


@implements(ops.MaxPool2D)
def _maxpool(op: ops.MaxPool2D, ctx: Context, x: np.ndarray) -> np.ndarray:
    return pool2d(x, op.kernel, op.strides, op.pads, op.ceil_mode, "max")


@implements(ops.AvgPool2D)
def _avgpool(op: ops.AvgPool2D, ctx: Context, x: np.ndarray) -> np.ndarray:
    return pool2d(x, op.kernel, op.strides, op.pads, op.ceil_mode, "avg", op.count_include_pad)


@implements(ops.GlobalAvgPool2D)
def _global_avgpool(op: Operation, ctx: Context, x: np.ndarray) -> np.ndarray:
    return _typed(op, x.mean(axis=(2, 3), keepdims=True, dtype=np.float64))


@implements(ops.Relu)
def _relu(op: Operation, ctx: Context, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.zeros((), dtype=x.dtype))


def _softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    if log:
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@implements(ops.Softmax)
def _softmax_op(op: ops.Softmax, ctx: Context, x: np.ndarray) -> np.ndarray:
    return _typed(op, _softmax(x, normalize_axis(op.axis, x.ndim), log=False))


@implements(ops.LogSoftmax)
def _log_softmax_op(op: ops.LogSoftmax, ctx: Context, x: np.ndarray) -> np.ndarray:
    return _typed(op, _softmax(x, normalize_axis(op.axis, x.ndim), log=True))


@implements(ops.Dropout)
@implements(ops.Identity)
def _identity(op: Operation, ctx: Context, x: np.ndarray) -> np.ndarray:
    return x


# -- fused sparse layers ------------------------------------------------------------------------------------
def apply_epilogue(op: ops.FusedLayer, ctx: Context, y: np.ndarray, boost: np.ndarray | None) -> np.ndarray:
    """Apply the fused stages of ``op`` (its :class:`Epilogue`, in order) to the layer output ``y``; ``boost`` is
    the boost operand's value in this run (it may be computed)."""
    for stage in Epilogue.of_op(op).stages:
        if isinstance(stage, ReluStage):
            y = np.maximum(y, np.zeros((), dtype=y.dtype))
        elif isinstance(stage, KWTAStage):
            y = kwta(y, boost, stage.k, stage.over, stage.ties, _observer(ctx, op, stage.k, stage.ties))
        elif isinstance(stage, MaxPoolStage):
            y = pool2d(y, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, "max")
        else:  # pragma: no cover - the verifier rejects other stages
            raise SparseccError(f"unknown epilogue stage {stage!r}", op_type=op.name)
    return y


@implements(ops.SparseConv2D)
def _sparse_conv2d(op: ops.SparseConv2D, ctx: Context, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   boost: np.ndarray | None) -> np.ndarray:
    return apply_epilogue(op, ctx, conv2d(x, w, bias, *_conv_attrs(op)), boost)


@implements(ops.SparseLinear)
def _sparse_linear(op: ops.SparseLinear, ctx: Context, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   boost: np.ndarray | None) -> np.ndarray:
    return apply_epilogue(op, ctx, linear(x, w, bias), boost)


# -- data movement ------------------------------------------------------------------------------------------
@implements(ops.Reshape)
def _reshape(op: ops.Reshape, ctx: Context, x: np.ndarray) -> np.ndarray:
    return x.reshape(op.shape)


@implements(ops.Transpose)
def _transpose(op: ops.Transpose, ctx: Context, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, op.perm))


@implements(ops.Concat)
def _concat(op: ops.Concat, ctx: Context, xs: list[np.ndarray]) -> np.ndarray:
    axis = normalize_axis(op.axis, xs[0].ndim)
    if len({x.shape[:axis] + x.shape[axis + 1:] for x in xs}) > 1:
        raise InputError(f"operands of shapes {[list(x.shape) for x in xs]} do not concatenate along axis {axis} "
                         "at run time", op_type=op.name)
    return np.concatenate(xs, axis=axis)


@implements(ops.Slice)
def _slice(op: ops.Slice, ctx: Context, x: np.ndarray) -> np.ndarray:
    index: list[slice] = [slice(None)] * x.ndim
    for start, end, axis, step in zip(op.starts, op.ends, op.axes, op.steps, strict=True):
        index[normalize_axis(axis, x.ndim)] = slice(start, end, step)
    return np.ascontiguousarray(x[tuple(index)])


@implements(ops.Gather)
def _gather(op: ops.Gather, ctx: Context, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    axis = normalize_axis(op.axis, x.ndim)
    idx = np.where(indices < 0, indices + x.shape[axis], indices)
    if np.any((idx < 0) | (idx >= x.shape[axis])):
        raise InputError(f"gather index out of range for axis of size {x.shape[axis]}", op_type=op.name)
    return np.take(x, idx, axis=axis)


def descending_order(x: np.ndarray, axis: int) -> np.ndarray:
    """Indices that sort ``x`` along ``axis`` from the largest down, NaN first (NaN ranks above +inf, as in
    numpy's sort order, torch.topk and ONNX's reference TopK); equal values: lower index first."""
    order = np.argsort(-x, axis=axis, kind="stable")  # NaN last here
    nan_last = np.isnan(np.take_along_axis(x, order, axis=axis))
    return np.take_along_axis(order, np.argsort(~nan_last, axis=axis, kind="stable"), axis=axis)


def topk(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Values and indices of the k largest/smallest along ``axis``; equal values: lower index first.
    NaN ranks above +inf: first among the largest, last among the smallest."""
    order = descending_order(x, axis) if largest else np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


@implements(ops.TopK)
def _topk(op: ops.TopK, ctx: Context, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # sorted=False leaves the order unspecified; returning it sorted is one valid order.
    axis = normalize_axis(op.axis, x.ndim)
    if op.k > x.shape[axis]:
        raise InputError(f"k={op.k} exceeds the size {x.shape[axis]} of axis {axis}", op_type=op.name)
    return topk(x, op.k, axis, op.largest)


@implements(ops.ScatterElements)
def _scatter(op: ops.ScatterElements, ctx: Context, data: np.ndarray, indices: np.ndarray, updates: np.ndarray
             ) -> np.ndarray:
    axis = normalize_axis(op.axis, data.ndim)
    idx = np.where(indices < 0, indices + data.shape[axis], indices)
    out = data.copy()
    np.put_along_axis(out, idx, updates, axis=axis)
    return out


@implements(ops.FullLike)
def _full_like(op: ops.FullLike, ctx: Context, like: np.ndarray) -> np.ndarray:
    return np.full(like.shape, op.value, dtype=op.result.type.numpy_dtype)


@implements(ops.Expand)
def _expand(op: ops.Expand, ctx: Context, x: np.ndarray) -> np.ndarray:
    target = tuple(1 if d == -1 else d for d in op.shape)
    x, _ = _broadcastable(op, x, np.broadcast_to(np.int8(0), target))
    return np.ascontiguousarray(np.broadcast_to(x, np.broadcast_shapes(x.shape, target)))
