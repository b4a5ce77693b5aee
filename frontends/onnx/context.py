"""State of one ONNX import: the value table, symbolic shape vectors and helpers for converters.

Shape arithmetic with a dynamic batch (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) is evaluated at
import time: ``Shape`` of a tensor with a dynamic batch yields a :class:`SymVec` whose entries are ints or
the batch symbol :data:`BATCH`, and the ops consuming it compute symbolically. Only when such a vector
reaches ``Reshape``/``Expand``/``ConstantOfShape`` does it become an IR attribute (the batch written as -1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import onnx

from ...compiler.errors import FrontendError, UnsupportedOpError
from ...compiler.ir import ops
from ...compiler.ir.core import Function, Operation, Value
from ...compiler.ir.types import TensorType

ONNX_TO_IR_DTYPE = {
    onnx.TensorProto.FLOAT: "f32",
    onnx.TensorProto.DOUBLE: "f64",
    onnx.TensorProto.FLOAT16: "f16",
    onnx.TensorProto.INT64: "i64",
    onnx.TensorProto.INT32: "i32",
    onnx.TensorProto.INT8: "i8",
    onnx.TensorProto.UINT8: "u8",
    onnx.TensorProto.BOOL: "i1",
}


class _Batch:
    """The dynamic batch size, as an entry of a symbolic shape vector."""

    def __repr__(self) -> str:
        return "N"


BATCH = _Batch()


@dataclasses.dataclass(frozen=True)
class SymVec:
    """A 1-D int64 vector known at import time except for batch entries; ``source`` is the tensor whose
    ``Shape`` it is, while it is still exactly that shape."""

    items: tuple[int | _Batch, ...]
    source: Value | None = None
    scalar: bool = False  # a 0-d value (e.g. Gather of one index)

    def with_items(self, items: Sequence[int | _Batch], scalar: bool = False) -> SymVec:
        return SymVec(tuple(items), None, scalar)


def ir_dtype(elem_type: int, what: str) -> str:
    dtype = ONNX_TO_IR_DTYPE.get(elem_type)
    if dtype is None:
        known = elem_type in onnx.TensorProto.DataType.values()
        name = onnx.TensorProto.DataType.Name(elem_type) if known else elem_type
        raise FrontendError(f"{what} has element type {name}, which sparsecc does not support")
    return dtype


class ImportContext:
    """What converters use: operand lookup (IR value, constant data or symbolic vector) and op emission."""

    def __init__(self, func: Function, opset: int) -> None:
        self.func = func
        self.opset = opset
        self.values: dict[str, Value | SymVec] = {}
        self.node: onnx.NodeProto | None = None

    # -- lookup -------------------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and name in self.values

    def entry(self, name: str) -> Value | SymVec:
        if name not in self.values:
            raise FrontendError(f"input '{name}' is not produced by any earlier node, initializer or graph input")
        return self.values[name]

    def input_name(self, index: int) -> str:
        assert self.node is not None
        return self.node.input[index] if index < len(self.node.input) else ""

    def optional(self, index: int) -> Value | SymVec | None:
        name = self.input_name(index)
        return self.entry(name) if name else None

    def tensor(self, index: int) -> Value:
        """Input ``index`` as an IR value (a symbolic vector without batch entries becomes a constant)."""
        name = self.input_name(index)
        if not name:
            raise FrontendError(f"input #{index} is required")
        entry = self.entry(name)
        if isinstance(entry, SymVec):
            if any(i is BATCH for i in entry.items):
                raise UnsupportedOpError("a shape computed from the dynamic batch is used as data; only "
                                         "Reshape/Expand/ConstantOfShape may consume it")
            data = np.array(entry.items, dtype=np.int64).reshape(() if entry.scalar else (-1,))
            return self.constant(data, name)
        return entry

    def const_data(self, index: int) -> np.ndarray | None:
        """Input ``index`` as numpy data if it is a constant (None for absent or non-constant inputs)."""
        name = self.input_name(index)
        if not name:
            return None
        entry = self.entry(name)
        if isinstance(entry, SymVec):
            if any(i is BATCH for i in entry.items):
                return None
            return np.array(entry.items, dtype=np.int64).reshape(() if entry.scalar else (-1,))
        owner = entry.owner
        return owner.value if isinstance(owner, ops.Constant) else None

    def required_const(self, index: int, what: str) -> np.ndarray:
        data = self.const_data(index)
        if data is None:
            raise UnsupportedOpError(f"{what} (input #{index}) must be a constant")
        return data

    def symvec(self, index: int) -> SymVec | None:
        """Input ``index`` as a symbolic vector if it is one or is integer constant data of rank <= 1."""
        name = self.input_name(index)
        if not name:
            return None
        entry = self.entry(name)
        if isinstance(entry, SymVec):
            return entry
        data = self.const_data(index)
        if data is not None and data.dtype.kind in "iu" and data.ndim <= 1:
            return SymVec(tuple(int(v) for v in data.reshape(-1)), None, data.ndim == 0)
        return None

    # -- emission -----------------------------------------------------------------------------------------
    def emit(self, cls: type[Operation], *operands: Value | Sequence[Value], name: str | None = None,
             **kw: object) -> Value:
        op = cls.create(*operands, **kw)
        self.func.append(op)
        op.results[0].name = name
        return op.results[0]

    def emit_op(self, cls: type[Operation], *operands: Value | Sequence[Value], **kw: object) -> Operation:
        op = cls.create(*operands, **kw)
        self.func.append(op)
        return op

    def constant(self, data: np.ndarray, name: str | None = None) -> Value:
        op = ops.Constant.of(np.asarray(data, order="C"), name=name)
        self.func.append(op)
        return op.result


def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of ONNX attribute ``name`` of ``node`` (``default`` when absent)."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def attr_int(node: onnx.NodeProto, name: str, default: int | None = None) -> int:
    """An integer attribute (``default`` when absent; TypeError, reported against the node, when it is absent
    without a default or not a number)."""
    value = attr(node, name, default)
    if not isinstance(value, int | float):
        raise TypeError(f"attribute '{name}' must be an integer, got {value!r}")
    return int(value)


def attr_float(node: onnx.NodeProto, name: str, default: float | None = None) -> float:
    """A float attribute (``default`` when absent; TypeError as :func:`attr_int`)."""
    value = attr(node, name, default)
    if not isinstance(value, int | float):
        raise TypeError(f"attribute '{name}' must be a number, got {value!r}")
    return float(value)


def reshape_target(in_shape: Sequence[int | None], target: Sequence[int | _Batch], allowzero: bool) -> tuple[int, ...]:
    """Resolve an ONNX Reshape target (0 = copy, -1 = infer, batch symbols) to the IR form: positive dims
    and at most one -1, where -1 stands for the dynamic batch when the input has one."""
    resolved: list[int | _Batch] = []
    for i, d in enumerate(target):
        if isinstance(d, int) and d == 0 and not allowzero:
            if i >= len(in_shape):
                raise FrontendError(f"Reshape copies dimension {i}, but the input has rank {len(in_shape)}")
            src = in_shape[i]
            resolved.append(BATCH if src is None else src)
        else:
            resolved.append(d)
    if any(isinstance(d, int) and d < -1 for d in resolved):
        raise FrontendError(f"Reshape target {list(target)} has a negative dimension")
    unknown = [i for i, d in enumerate(resolved) if d is BATCH or d == -1]
    dynamic_in = [d for d in in_shape if d is None]
    if len(dynamic_in) > 1:
        raise UnsupportedOpError("Reshape of a tensor with more than one dynamic dimension")
    static_in = math.prod(d for d in in_shape if d is not None)
    if not dynamic_in:
        out = [static_in // max(1, math.prod(d for d in resolved if isinstance(d, int) and d > 0))
               if d == -1 else d for d in resolved]
        if any(d is BATCH for d in out):
            raise FrontendError("Reshape refers to a dynamic batch that the input does not have")
        return tuple(int(d) for d in out)  # type: ignore[arg-type]
    if len(unknown) == 1:
        return tuple(-1 if i == unknown[0] else int(d) for i, d in enumerate(resolved))  # type: ignore[arg-type]
    if len(unknown) == 2 and sum(1 for i in unknown if resolved[i] is BATCH) == 1:
        known_out = math.prod(d for d in resolved if isinstance(d, int) and d > 0)
        if known_out == 0 or static_in % known_out:
            raise FrontendError(f"cannot reshape {list(in_shape)} to {list(target)}")
        return tuple(-1 if d is BATCH else static_in // known_out if d == -1 else int(d) for d in resolved)  # type: ignore[arg-type]
    raise UnsupportedOpError(f"Reshape target {list(target)} leaves more than the batch unknown")


def type_of_value_info(vi: onnx.ValueInfoProto) -> TensorType:
    """The IR type of a graph input/output; the one allowed dynamic dimension is the batch (axis 0)."""
    t = vi.type
    if not t.HasField("tensor_type"):
        raise FrontendError(f"graph input '{vi.name}' is not a tensor")
    tt = t.tensor_type
    dtype = ir_dtype(tt.elem_type, f"graph input '{vi.name}'")
    if not tt.HasField("shape"):
        raise FrontendError(f"graph input '{vi.name}' has no shape (its rank must be known)")
    dims: list[int | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_value"):
            raise FrontendError(f"graph input '{vi.name}' has a dimension of size {d.dim_value}")
        else:
            dims.append(None)
    dynamic = [i for i, d in enumerate(dims) if d is None]
    if dynamic and dynamic != [0]:
        raise FrontendError(f"graph input '{vi.name}' has dynamic dimensions at axes {dynamic}; only a dynamic batch "
                            "(axis 0) is supported")
    return TensorType(tuple(dims), dtype)
