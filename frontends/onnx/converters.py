"""One converter per ONNX op (default domain), each for the opset range it understands.

A converter takes the :class:`ImportContext` (whose ``node`` is the node being converted) and returns the
node's outputs: IR values or symbolic shape vectors, one per ONNX output (None for outputs it does not
produce, which must then be unused). Register with ``@converter("OpType", since=..., until=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

import numpy as np
import onnx

from ...compiler.errors import FrontendError, UnsupportedOpError
from ...compiler.ir import ops
from ...compiler.ir.core import Operation, Value
from ...compiler.ir.shapes import normalize_axis
from .context import BATCH, ImportContext, SymVec, attr, attr_float, attr_int, ir_dtype, reshape_target

Output = Value | SymVec | None
Converter = Callable[[ImportContext], Sequence[Output]]


class _Entry:
    def __init__(self, fn: Converter, since: int, until: int | None) -> None:
        self.fn, self.since, self.until = fn, since, until


CONVERTERS: dict[str, list[_Entry]] = {}


def converter(op_type: str, since: int = 1, until: int | None = None) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        CONVERTERS.setdefault(op_type, []).append(_Entry(fn, since, until))
        return fn

    return wrap


def find_converter(op_type: str, opset: int) -> Converter | None:
    for entry in CONVERTERS.get(op_type, []):
        if entry.since <= opset and (entry.until is None or opset <= entry.until):
            return entry.fn
    return None


def supported_ops() -> list[str]:
    return sorted(CONVERTERS)


@overload
def _ints(node: onnx.NodeProto, name: str, default: Sequence[int]) -> tuple[int, ...]: ...
@overload
def _ints(node: onnx.NodeProto, name: str, default: None = None) -> tuple[int, ...] | None: ...
def _ints(node: onnx.NodeProto, name: str, default: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """An integer-list attribute (``default`` when absent; TypeError, reported against the node, when it is
    not a list)."""
    value = attr(node, name, default)
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise TypeError(f"attribute '{name}' must be a list of integers, got {value!r}")
    return tuple(int(v) for v in value)


def _node(ctx: ImportContext) -> onnx.NodeProto:
    assert ctx.node is not None
    return ctx.node


def _name(ctx: ImportContext, index: int = 0) -> str | None:
    node = _node(ctx)
    return node.output[index] if index < len(node.output) and node.output[index] else None


def _emit(ctx: ImportContext, cls: type[Operation], *operands: Value | Sequence[Value],
          **kw: object) -> list[Output]:
    return [ctx.emit(cls, *operands, name=_name(ctx), **kw)]


# -- layers -------------------------------------------------------------------------------------------------
def _window_pads(ctx: ImportContext, in_hw: Sequence[int | None], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> tuple[int, int, int, int]:
    node = _node(ctx)
    auto_pad = attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("NOTSET", ""):
        pads = _ints(node, "pads", (0, 0, 0, 0))
        if len(pads) != 4:
            raise FrontendError(f"pads must have 4 entries for a 2-D window, got {list(pads)}")
        return pads[0], pads[1], pads[2], pads[3]
    if auto_pad == "VALID":
        return 0, 0, 0, 0
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations, strict=True):
            if size is None:
                raise UnsupportedOpError(f"auto_pad={auto_pad} needs static spatial sizes")
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        return begin[0], begin[1], end[0], end[1]
    raise FrontendError(f"unknown auto_pad '{auto_pad}'")


@converter("Conv")
def _conv(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    x, w = ctx.tensor(0), ctx.tensor(1)
    bias = ctx.tensor(2) if ctx.input_name(2) else None
    if x.type.rank != 4 or w.type.rank != 4:
        raise UnsupportedOpError(f"only 2-D convolution (NCHW input, OIHW weight) is supported; got ranks "
                                 f"{x.type.rank} and {w.type.rank}")
    kernel = _ints(node, "kernel_shape") or tuple(w.type.shape[2:])  # type: ignore[arg-type]
    if tuple(kernel) != tuple(w.type.shape[2:]):
        raise FrontendError(f"kernel_shape {list(kernel)} does not match the weight {list(w.type.shape)}")
    strides = _ints(node, "strides", (1, 1))
    dilations = _ints(node, "dilations", (1, 1))
    pads = _window_pads(ctx, x.type.shape[2:], kernel, strides, dilations)  # type: ignore[arg-type]
    return _emit(ctx, ops.Conv2D, x, w, bias=bias, strides=strides, pads=pads, dilations=dilations,
                 groups=attr_int(node, "group", 1))


@converter("Gemm")
def _gemm(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    alpha, beta = attr_float(node, "alpha", 1.0), attr_float(node, "beta", 1.0)
    trans_a, trans_b = attr_int(node, "transA", 0), attr_int(node, "transB", 0)
    a = ctx.tensor(0)
    b = ctx.const_data(1)
    if trans_a or b is None or a.type.rank != 2:
        raise UnsupportedOpError("Gemm is supported as a layer: A (batch, in) not transposed, B constant")
    weight = (b if trans_b else b.T) * np.asarray(alpha, b.dtype)  # (out, in)
    c = ctx.const_data(2)
    bias_value = None
    if ctx.input_name(2):
        if c is None:
            raise UnsupportedOpError("Gemm's C must be a constant")
        c = np.asarray(c)
        if c.size not in (1, weight.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            raise UnsupportedOpError(f"Gemm's C of shape {list(c.shape)} is not a per-output bias")
        bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)) * np.asarray(beta, c.dtype)
        bias_value = ctx.constant(bias.astype(weight.dtype), ctx.input_name(2))
    w_value = ctx.constant(np.ascontiguousarray(weight), ctx.input_name(1))
    return _emit(ctx, ops.Linear, a, w_value, bias=bias_value)


@converter("MatMul")
def _matmul(ctx: ImportContext) -> list[Output]:
    a = ctx.tensor(0)
    b = ctx.const_data(1)
    if b is not None and b.ndim == 2 and a.type.rank == 2:
        return _emit(ctx, ops.Linear, a, ctx.constant(np.ascontiguousarray(b.T), ctx.input_name(1)))
    return _emit(ctx, ops.MatMul, a, ctx.tensor(1))


@converter("BatchNormalization")
def _batch_norm(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    if attr_int(node, "training_mode", 0):
        raise UnsupportedOpError("BatchNormalization in training mode")
    if any(o for o in node.output[1:]):
        raise UnsupportedOpError("BatchNormalization's running-statistics outputs")
    x, scale, bias, mean, var = (ctx.tensor(i) for i in range(5))
    return _emit(ctx, ops.BatchNorm, x, scale, bias, mean, var, epsilon=attr_float(node, "epsilon", 1e-5))


def _pool_attrs(ctx: ImportContext, x: Value) -> dict[str, object]:
    node = _node(ctx)
    if x.type.rank != 4:
        raise UnsupportedOpError(f"only 2-D pooling of NCHW tensors is supported (rank {x.type.rank})")
    kernel = _ints(node, "kernel_shape")
    if kernel is None or len(kernel) != 2:
        raise FrontendError("kernel_shape must list 2 sizes")
    strides = _ints(node, "strides", (1, 1))
    dilations = _ints(node, "dilations", (1, 1))
    if dilations != (1, 1):
        raise UnsupportedOpError(f"pooling with dilations {list(dilations)}")
    pads = _window_pads(ctx, x.type.shape[2:], kernel, strides, (1, 1))
    return {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": bool(attr(node, "ceil_mode", 0))}


@converter("MaxPool")
def _maxpool(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOpError("MaxPool's Indices output")
    if attr_int(node, "storage_order", 0):
        raise UnsupportedOpError("MaxPool with storage_order=1")
    x = ctx.tensor(0)
    return _emit(ctx, ops.MaxPool2D, x, **_pool_attrs(ctx, x))


@converter("AveragePool")
def _avgpool(ctx: ImportContext) -> list[Output]:
    x = ctx.tensor(0)
    include = bool(attr(_node(ctx), "count_include_pad", 0))
    return _emit(ctx, ops.AvgPool2D, x, count_include_pad=include, **_pool_attrs(ctx, x))


@converter("GlobalAveragePool")
def _global_avgpool(ctx: ImportContext) -> list[Output]:
    return _emit(ctx, ops.GlobalAvgPool2D, ctx.tensor(0))


@converter("Relu")
def _relu(ctx: ImportContext) -> list[Output]:
    return _emit(ctx, ops.Relu, ctx.tensor(0))


@converter("Softmax", since=13)
@converter("LogSoftmax", since=13)
def _softmax(ctx: ImportContext) -> list[Output]:
    cls = ops.Softmax if _node(ctx).op_type == "Softmax" else ops.LogSoftmax
    return _emit(ctx, cls, ctx.tensor(0), axis=attr_int(_node(ctx), "axis", -1))


@converter("Softmax", until=12)
@converter("LogSoftmax", until=12)
def _softmax_v1(ctx: ImportContext) -> list[Output]:
    """Before opset 13 the input is coerced to 2-D at ``axis`` (default 1) and normalised per row."""
    x = ctx.tensor(0)
    cls = ops.Softmax if _node(ctx).op_type == "Softmax" else ops.LogSoftmax
    axis = normalize_axis(attr_int(_node(ctx), "axis", 1), x.type.rank)
    if axis == x.type.rank - 1:
        return _emit(ctx, cls, x, axis=-1)
    if any(d is None for d in x.type.shape[axis:]):
        raise UnsupportedOpError("opset < 13 softmax over a dynamic dimension")
    inner = int(np.prod(x.type.shape[axis:]))
    flat = ctx.emit(ops.Reshape, x, shape=(-1, inner))
    y = ctx.emit(cls, flat, axis=1)
    back = tuple(-1 if d is None else d for d in x.type.shape)
    return _emit(ctx, ops.Reshape, y, shape=back)


@converter("Dropout")
@converter("Identity")
def _identity(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise UnsupportedOpError("Dropout's mask output")
    if node.op_type == "Dropout" and ctx.input_name(2):  # training_mode (opset >= 12)
        training = ctx.required_const(2, "Dropout's training_mode")
        if training.size != 1 or bool(training.reshape(-1)[0]):
            raise UnsupportedOpError("Dropout with training_mode=1 (random masking) is not supported; export "
                                     "the model in eval mode")
    entry = ctx.entry(ctx.input_name(0))
    if isinstance(entry, SymVec):
        return [entry]
    return _emit(ctx, ops.Dropout if node.op_type == "Dropout" else ops.Identity, entry)


# -- elementwise --------------------------------------------------------------------------------------------
_BINARY = {
    "Add": ops.Add, "Sub": ops.Sub, "Mul": ops.Mul, "Div": ops.Div, "Less": ops.Less,
    "LessOrEqual": ops.LessEqual, "Greater": ops.Greater, "GreaterOrEqual": ops.GreaterEqual,
    "Equal": ops.Equal, "And": ops.And, "Or": ops.Or,
}


def _binary(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    sym = _symbolic_binary(ctx)
    if sym is not None:
        return [sym]
    return _emit(ctx, _BINARY[node.op_type], ctx.tensor(0), ctx.tensor(1))


def _symbolic_binary(ctx: ImportContext) -> SymVec | None:
    """Integer arithmetic on shape vectors; entries holding the batch only pass through ``x * 1``/``x + 0``."""
    a, b = ctx.symvec(0), ctx.symvec(1)
    if a is None or b is None or not any(isinstance(e, SymVec) for e in (ctx.entry(ctx.input_name(0)),
                                                                         ctx.entry(ctx.input_name(1)))):
        return None
    op_type = _node(ctx).op_type
    fns = {"Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y,
           "Div": lambda x, y: int(x / y)}
    if op_type not in fns:
        return None
    n = max(len(a.items), len(b.items))
    ai = a.items * n if len(a.items) == 1 else a.items
    bi = b.items * n if len(b.items) == 1 else b.items
    if len(ai) != len(bi):
        raise FrontendError(f"{op_type} of shape vectors of lengths {len(a.items)} and {len(b.items)}")
    out: list[int | object] = []
    for x, y in zip(ai, bi, strict=True):
        if x is BATCH or y is BATCH:
            other = y if x is BATCH else x
            identity = {"Add": 0, "Sub": 0, "Mul": 1, "Div": 1}[op_type]
            if other != identity or (op_type in ("Sub", "Div") and y is BATCH):
                raise UnsupportedOpError(f"{op_type} on the dynamic batch size")
            out.append(BATCH)
        else:
            out.append(fns[op_type](x, y))
    return a.with_items(out, a.scalar and b.scalar)  # type: ignore[arg-type]


for _op_type in _BINARY:
    converter(_op_type, since=7 if _op_type != "LessOrEqual" else 12)(_binary)

_UNARY = {"Exp": ops.Exp, "Neg": ops.Neg, "Sqrt": ops.Sqrt, "Not": ops.Not}


def _unary(ctx: ImportContext) -> list[Output]:
    return _emit(ctx, _UNARY[_node(ctx).op_type], ctx.tensor(0))


for _op_type in _UNARY:
    converter(_op_type)(_unary)


@converter("Cast", since=6)
def _cast(ctx: ImportContext) -> list[Output]:
    to = ir_dtype(attr_int(_node(ctx), "to"), "Cast target")
    entry = ctx.entry(ctx.input_name(0))
    if isinstance(entry, SymVec) and to in ("i64", "i32"):
        return [entry]
    return _emit(ctx, ops.Cast, ctx.tensor(0), to=to)


@converter("Where", since=9)
def _where(ctx: ImportContext) -> list[Output]:
    return _emit(ctx, ops.Where, ctx.tensor(0), ctx.tensor(1), ctx.tensor(2))


# -- constants and shapes -----------------------------------------------------------------------------------
@converter("Constant")
def _constant(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    if len(node.attribute) != 1:
        raise FrontendError("Constant needs exactly one value attribute")
    a = node.attribute[0]
    if a.name == "value":
        data = onnx.numpy_helper.to_array(a.t)
    elif a.name == "value_float":
        data = np.asarray(a.f, dtype=np.float32)
    elif a.name == "value_floats":
        data = np.asarray(list(a.floats), dtype=np.float32)
    elif a.name == "value_int":
        data = np.asarray(a.i, dtype=np.int64)
    elif a.name == "value_ints":
        data = np.asarray(list(a.ints), dtype=np.int64)
    else:
        raise UnsupportedOpError(f"Constant with attribute '{a.name}'")
    ir_dtype_check(data, "Constant")
    return [ctx.constant(data, _name(ctx))]


def ir_dtype_check(data: np.ndarray, what: str) -> None:
    from ...compiler.ir.types import DTYPES

    if data.dtype not in DTYPES.values():
        raise FrontendError(f"{what} holds {data.dtype} data, which sparsecc does not support")


@converter("Shape")
def _shape(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    entry = ctx.entry(ctx.input_name(0))
    shape: tuple[int | None, ...]
    if isinstance(entry, SymVec):
        shape = (1,) if entry.scalar else (len(entry.items),)
        source = None
    else:
        shape, source = entry.type.shape, entry
    start = attr_int(node, "start", 0)
    end = attr(node, "end", None)
    items = [BATCH if d is None else d for d in shape][slice(start, None if end is None else int(end))]  # type: ignore[arg-type]
    whole = start == 0 and end is None
    return [SymVec(tuple(items), source if whole else None)]


@converter("Gather")
def _gather(ctx: ImportContext) -> list[Output]:
    axis = attr_int(_node(ctx), "axis", 0)
    vec = ctx.symvec(0)
    idx = ctx.const_data(1)
    if vec is not None and isinstance(ctx.entry(ctx.input_name(0)), SymVec):
        if idx is None or axis != 0:
            raise UnsupportedOpError("Gather from a shape vector needs constant indices")
        picked = [vec.items[int(i)] for i in idx.reshape(-1)]
        return [vec.with_items(picked, scalar=idx.ndim == 0)]
    return _emit(ctx, ops.Gather, ctx.tensor(0), ctx.tensor(1), axis=axis)


def _axes(ctx: ImportContext, index: int) -> tuple[int, ...]:
    if ctx.opset >= 13:
        data = ctx.const_data(index) if ctx.input_name(index) else None
        if ctx.input_name(index) and data is None:
            raise UnsupportedOpError("axes must be a constant")
        return () if data is None else tuple(int(a) for a in data.reshape(-1))
    return _ints(_node(ctx), "axes", ()) or ()


def _reshape_to(ctx: ImportContext, x: Value, shape: Sequence[int | None]) -> list[Output]:
    if sum(1 for d in shape if d is None) > 1:
        raise UnsupportedOpError("a result with more than one dynamic dimension")
    return _emit(ctx, ops.Reshape, x, shape=tuple(-1 if d is None else d for d in shape))


@converter("Unsqueeze")
def _unsqueeze(ctx: ImportContext) -> list[Output]:
    entry = ctx.entry(ctx.input_name(0))
    axes = _axes(ctx, 1)
    if isinstance(entry, SymVec):
        if not entry.scalar or [normalize_axis(a, 1) for a in axes] != [0]:
            raise UnsupportedOpError("Unsqueeze of a shape vector other than scalar -> [1]")
        return [entry.with_items(entry.items)]
    x = ctx.tensor(0)
    rank = x.type.rank + len(axes)
    norm = sorted(normalize_axis(a, rank) for a in axes)
    shape = list(x.type.shape)
    for a in norm:
        shape.insert(a, 1)
    return _reshape_to(ctx, x, shape)


@converter("Squeeze")
def _squeeze(ctx: ImportContext) -> list[Output]:
    entry = ctx.entry(ctx.input_name(0))
    axes = _axes(ctx, 1)
    if isinstance(entry, SymVec):
        if len(entry.items) != 1:
            raise UnsupportedOpError("Squeeze of a shape vector of length > 1")
        return [entry.with_items(entry.items, scalar=True)]
    x = ctx.tensor(0)
    norm = {normalize_axis(a, x.type.rank) for a in axes} if axes else {i for i, d in enumerate(x.type.shape) if d == 1}
    if any(x.type.shape[a] != 1 for a in norm):
        raise FrontendError(f"Squeeze of axes {sorted(norm)} that are not all of size 1 in {list(x.type.shape)}")
    return _reshape_to(ctx, x, [d for i, d in enumerate(x.type.shape) if i not in norm])


@converter("Concat")
def _concat(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    axis = attr_int(node, "axis")
    entries = [ctx.entry(n) for n in node.input]
    if any(isinstance(e, SymVec) for e in entries):
        items: list = []
        for i in range(len(node.input)):
            vec = ctx.symvec(i)
            if vec is None:
                raise UnsupportedOpError("Concat of a shape vector with non-constant data")
            items.extend(vec.items)
        return [SymVec(tuple(items))]
    return _emit(ctx, ops.Concat, [ctx.tensor(i) for i in range(len(node.input))], axis=axis)


@converter("Flatten")
def _flatten(ctx: ImportContext) -> list[Output]:
    x = ctx.tensor(0)
    axis = normalize_axis(attr_int(_node(ctx), "axis", 1), x.type.rank + 1) if x.type.rank else 0
    outer, inner = x.type.shape[:axis], x.type.shape[axis:]
    if any(d is None for d in inner) or sum(d is None for d in outer) > 1:
        raise UnsupportedOpError("Flatten with dynamic dimensions after the axis")
    o = None if None in outer else int(np.prod(outer, dtype=np.int64))
    return _reshape_to(ctx, x, [o, int(np.prod(inner, dtype=np.int64))])


@converter("Reshape", since=5)
def _reshape(ctx: ImportContext) -> list[Output]:
    target = ctx.symvec(1)
    if target is None:
        raise UnsupportedOpError("Reshape to a shape computed from data")
    entry = ctx.entry(ctx.input_name(0))
    if isinstance(entry, SymVec) and len(entry.items) == 1 and target.items in ((), (1,), (-1,)):
        # a one-entry shape vector between scalar and [1] (the dynamo exporter's K of a full sort)
        return [entry.with_items(entry.items, scalar=not target.items)]
    x = ctx.tensor(0)
    allowzero = bool(attr(_node(ctx), "allowzero", 0))
    return _emit(ctx, ops.Reshape, x, shape=reshape_target(x.type.shape, target.items, allowzero))


@converter("Transpose")
def _transpose(ctx: ImportContext) -> list[Output]:
    x = ctx.tensor(0)
    perm = _ints(_node(ctx), "perm") or tuple(reversed(range(x.type.rank)))
    return _emit(ctx, ops.Transpose, x, perm=perm)


@converter("ConstantOfShape", since=9)
def _constant_of_shape(ctx: ImportContext) -> list[Output]:
    value = attr(_node(ctx), "value", None)
    fill = onnx.numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    if fill.size != 1:
        raise FrontendError("ConstantOfShape's value must hold one element")
    ir_dtype_check(fill, "ConstantOfShape")
    vec = ctx.symvec(0)
    if vec is None:
        raise UnsupportedOpError("ConstantOfShape of a shape computed from data")
    if not any(i is BATCH for i in vec.items):
        return [ctx.constant(np.full(tuple(vec.items), fill[0], dtype=fill.dtype), _name(ctx))]  # type: ignore[arg-type]
    if vec.source is None:
        raise UnsupportedOpError("ConstantOfShape of a dynamic shape that is not exactly the shape of a tensor")
    from ...compiler.ir.types import dtype_of_numpy

    return _emit(ctx, ops.FullLike, vec.source, value=float(fill[0]), dtype=dtype_of_numpy(fill.dtype))


@converter("Expand", since=8)
def _expand(ctx: ImportContext) -> list[Output]:
    x = ctx.tensor(0)
    vec = ctx.symvec(1)
    if vec is None:
        raise UnsupportedOpError("Expand to a shape computed from data")
    return _emit(ctx, ops.Expand, x, shape=tuple(-1 if i is BATCH else int(i) for i in vec.items))  # type: ignore[arg-type]


@converter("Slice", since=10)
def _slice(ctx: ImportContext) -> list[Output]:
    starts = ctx.required_const(1, "starts").reshape(-1)
    ends = ctx.required_const(2, "ends").reshape(-1)
    entry = ctx.entry(ctx.input_name(0))
    rank = 1 if isinstance(entry, SymVec) else entry.type.rank
    axes_data = ctx.const_data(3)
    if ctx.input_name(3) and axes_data is None:
        raise UnsupportedOpError("Slice axes must be constant")
    axes = axes_data.reshape(-1) if axes_data is not None else np.arange(len(starts))
    steps_data = ctx.const_data(4)
    if ctx.input_name(4) and steps_data is None:
        raise UnsupportedOpError("Slice steps must be constant")
    steps = steps_data.reshape(-1) if steps_data is not None else np.ones(len(starts), np.int64)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise FrontendError("Slice starts, ends, axes and steps differ in length")
    if isinstance(entry, SymVec):
        if [normalize_axis(int(a), 1) for a in axes] != [0]:
            raise FrontendError("Slice of a shape vector along an axis other than 0")
        return [entry.with_items(entry.items[slice(int(starts[0]), int(ends[0]), int(steps[0]))])]
    return _emit(ctx, ops.Slice, ctx.tensor(0), starts=tuple(int(s) for s in starts), ends=tuple(int(e) for e in ends),
                 axes=tuple(normalize_axis(int(a), rank) for a in axes), steps=tuple(int(s) for s in steps))


@converter("TopK", since=10)
def _topk(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    k = ctx.required_const(1, "K").reshape(-1)
    if k.size != 1:
        raise FrontendError("TopK's K must hold one value")
    op = ctx.emit_op(ops.TopK, ctx.tensor(0), k=int(k[0]), axis=attr_int(node, "axis", -1),
                     largest=bool(attr(node, "largest", 1)), sorted=bool(attr(node, "sorted", 1)))
    for i, r in enumerate(op.results):
        r.name = _name(ctx, i)
    return list(op.results)


@converter("ScatterElements", since=11)
def _scatter_elements(ctx: ImportContext) -> list[Output]:
    node = _node(ctx)
    reduction = attr(node, "reduction", b"none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction != "none":
        raise UnsupportedOpError(f"ScatterElements with reduction '{reduction}'")
    return _emit(ctx, ops.ScatterElements, ctx.tensor(0), ctx.tensor(1), ctx.tensor(2),
                 axis=attr_int(node, "axis", 0))


@converter("ReduceMin", since=1)
def _reduce_min(ctx: ImportContext) -> list[Output]:
    """``ReduceMin`` of the values of a sorted, largest-first ``TopK`` along its axis is its last value (the
    k-th largest, e.g. a k-WTA threshold): converted to that ``Slice``. The IR has no general min-reduction."""
    node = _node(ctx)
    x = ctx.tensor(0)
    axes = _axes(ctx, 1) if ctx.opset >= 18 else (_ints(node, "axes", ()) or ())
    top = x.owner
    is_values = isinstance(top, ops.TopK) and x is top.results[0] and top.largest and top.sorted
    axis = normalize_axis(top.axis, x.type.rank) if isinstance(top, ops.TopK) and is_values else None
    if not isinstance(top, ops.TopK) or axis is None or [normalize_axis(a, x.type.rank) for a in axes] != [axis]:
        raise UnsupportedOpError("ReduceMin is supported only over the axis of sorted TopK values (the k-th "
                                 "largest value, as k-WTA thresholds use it)")
    k = top.k
    out = ctx.emit(ops.Slice, x, starts=(k - 1,), ends=(k,), axes=(axis,), steps=(1,))
    if attr_int(node, "keepdims", 1):
        out.name = _name(ctx)
        return [out]
    return _reshape_to(ctx, out, [d for i, d in enumerate(x.type.shape) if i != axis])


@converter("ArgMax", since=1)
def _argmax(ctx: ImportContext) -> list[Output]:
    """``ArgMax`` (first index of the largest) is ``TopK(k=1)``'s indices (lower index first among equals),
    so an argmax one-hot selection is recognised as a k-WTA with k = 1 and ties broken."""
    node = _node(ctx)
    if attr_int(node, "select_last_index", 0):
        raise UnsupportedOpError("ArgMax with select_last_index=1")
    x = ctx.tensor(0)
    axis = normalize_axis(attr_int(node, "axis", 0), x.type.rank)
    op = ctx.emit_op(ops.TopK, x, k=1, axis=axis, largest=True, sorted=True)
    op.results[0].name = f"{_name(ctx)}_max"
    if attr_int(node, "keepdims", 1):
        op.results[1].name = _name(ctx)
        return [op.results[1]]
    return _reshape_to(ctx, op.results[1], [d for i, d in enumerate(x.type.shape) if i != axis])
