"""Elementwise and matrix ops with numpy/ONNX broadcasting (``math.*``)."""

from __future__ import annotations

from ..attributes import check
from ..core import Operation, Value, attr_def, operand_def, register_op
from ..shapes import broadcast_shapes
from ..types import DTYPES, TensorType


def _same_dtype(op: Operation, *values: Value) -> str:
    dtypes = {v.type.dtype for v in values}
    check(len(dtypes) == 1, f"{op.name}: operands must share one dtype, got {sorted(dtypes)}")
    return dtypes.pop()


class BinaryOp(Operation):
    """``lhs (op) rhs`` elementwise with broadcasting; both operands share a dtype."""

    lhs = operand_def()
    rhs = operand_def()
    result_dtype: str | None = None  # None: the operands' dtype

    def infer_types(self) -> list[TensorType]:
        dtype = _same_dtype(self, self.lhs, self.rhs)
        shape = broadcast_shapes(self.lhs.type.shape, self.rhs.type.shape)
        return [TensorType(shape, self.result_dtype or dtype)]


@register_op
class Add(BinaryOp):
    """Elementwise sum."""

    name = "math.add"


@register_op
class Sub(BinaryOp):
    """Elementwise difference."""

    name = "math.sub"


@register_op
class Mul(BinaryOp):
    """Elementwise product."""

    name = "math.mul"


@register_op
class Div(BinaryOp):
    """Elementwise quotient (integer division truncates toward zero, as ONNX)."""

    name = "math.div"


class CompareOp(BinaryOp):
    """An elementwise comparison producing booleans (``i1``)."""

    result_dtype = "i1"


@register_op
class Less(CompareOp):
    """``lhs < rhs``."""

    name = "math.less"


@register_op
class LessEqual(CompareOp):
    """``lhs <= rhs``."""

    name = "math.less_equal"


@register_op
class Greater(CompareOp):
    """``lhs > rhs``."""

    name = "math.greater"


@register_op
class GreaterEqual(CompareOp):
    """``lhs >= rhs``."""

    name = "math.greater_equal"


@register_op
class Equal(CompareOp):
    """``lhs == rhs``."""

    name = "math.equal"


class LogicalOp(BinaryOp):
    """A logical op on booleans (``i1``)."""

    def verify(self) -> None:
        check(self.lhs.type.dtype == "i1", f"{self.name}: operands must be booleans (i1)")


@register_op
class And(LogicalOp):
    """Logical and of booleans."""

    name = "math.and"


@register_op
class Or(LogicalOp):
    """Logical or of booleans."""

    name = "math.or"


class UnaryOp(Operation):
    """An elementwise op of one operand; the result has the input's shape and dtype."""

    input = operand_def()

    def infer_types(self) -> list[TensorType]:
        return [self.input.type.with_encoding(None)]


@register_op
class Exp(UnaryOp):
    """``e ** x``."""

    name = "math.exp"


@register_op
class Neg(UnaryOp):
    """``-x``."""

    name = "math.neg"


@register_op
class Sqrt(UnaryOp):
    """Square root."""

    name = "math.sqrt"


@register_op
class Not(UnaryOp):
    """Logical negation of booleans."""

    name = "math.not"

    def verify(self) -> None:
        check(self.input.type.dtype == "i1", f"{self.name}: operand must be boolean (i1)")


@register_op
class Cast(Operation):
    """Convert the element type to ``to`` (float to int truncates toward zero, as numpy)."""

    name = "math.cast"
    input = operand_def()
    to = attr_def(str, choices=tuple(DTYPES))

    def infer_types(self) -> list[TensorType]:
        return [TensorType(self.input.type.shape, self.to)]


@register_op
class Where(Operation):
    """``cond ? a : b`` elementwise with broadcasting; ``cond`` is boolean, ``a`` and ``b`` share a dtype."""

    name = "math.where"
    cond = operand_def()
    a = operand_def()
    b = operand_def()

    def infer_types(self) -> list[TensorType]:
        cond = self.cond.type
        check(cond.dtype == "i1", f"{self.name}: condition must be boolean (i1), got {cond.dtype}")
        dtype = _same_dtype(self, self.a, self.b)
        shape = broadcast_shapes(cond.shape, self.a.type.shape, self.b.type.shape)
        return [TensorType(shape, dtype)]


@register_op
class MatMul(Operation):
    """Numpy ``matmul`` of two tensors (rank >= 2; leading axes broadcast). Constant right-hand sides of
    rank 2 are turned into ``nn.linear`` by the frontend."""

    name = "math.matmul"
    lhs = operand_def()
    rhs = operand_def()

    def infer_types(self) -> list[TensorType]:
        a, b = self.lhs.type, self.rhs.type
        dtype = _same_dtype(self, self.lhs, self.rhs)
        check(a.rank >= 2 and b.rank >= 2, f"{self.name}: operands must have rank >= 2")
        check(a.shape[-1] is None or b.shape[-2] is None or a.shape[-1] == b.shape[-2],
              f"{self.name}: inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return [TensorType((*batch, a.shape[-2], b.shape[-1]), dtype)]
