"""Elementwise and matrix ops with numpy/ONNX broadcasting (``math.*``)."""

from __future__ import annotations

from ..attributes import check
from ..core import Attr, Operand, Operation, register_op
from ..shapes import broadcast_shapes
from ..types import DTYPES, TensorType


def _same_dtype(op: Operation, *names: str) -> str:
    dtypes = {op.operand(n).type.dtype for n in names}  # type: ignore[union-attr]
    check(len(dtypes) == 1, f"{op.name}: operands must share one dtype, got {sorted(dtypes)}")
    return dtypes.pop()


class BinaryOp(Operation):
    """``lhs (op) rhs`` elementwise with broadcasting; both operands share a dtype."""

    operands = (Operand("lhs"), Operand("rhs"))
    result_dtype: str | None = None  # None: the operands' dtype

    def infer_types(self) -> list[TensorType]:
        dtype = _same_dtype(self, "lhs", "rhs")
        shape = broadcast_shapes(self.operand("lhs").type.shape, self.operand("rhs").type.shape)  # type: ignore[union-attr]
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
    def verify(self) -> None:
        check(self.operand("lhs").type.dtype == "i1", f"{self.name}: operands must be booleans (i1)")  # type: ignore[union-attr]


@register_op
class And(LogicalOp):
    """Logical and of booleans."""

    name = "math.and"


@register_op
class Or(LogicalOp):
    """Logical or of booleans."""

    name = "math.or"


class UnaryOp(Operation):
    operands = (Operand("input"),)

    def infer_types(self) -> list[TensorType]:
        return [self.operand("input").type.with_encoding(None)]  # type: ignore[union-attr]


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
        check(self.operand("input").type.dtype == "i1", f"{self.name}: operand must be boolean (i1)")  # type: ignore[union-attr]


@register_op
class Cast(Operation):
    """Convert the element type to ``to`` (float to int truncates toward zero, as numpy)."""

    name = "math.cast"
    operands = (Operand("input"),)
    attributes = (Attr("to", str, choices=tuple(DTYPES)),)

    def infer_types(self) -> list[TensorType]:
        x = self.operand("input").type  # type: ignore[union-attr]
        return [TensorType(x.shape, self.attr("to"))]


@register_op
class Where(Operation):
    """``cond ? a : b`` elementwise with broadcasting; ``cond`` is boolean, ``a`` and ``b`` share a dtype."""

    name = "math.where"
    operands = (Operand("cond"), Operand("a"), Operand("b"))

    def infer_types(self) -> list[TensorType]:
        cond = self.operand("cond").type  # type: ignore[union-attr]
        check(cond.dtype == "i1", f"{self.name}: condition must be boolean (i1), got {cond.dtype}")
        dtype = _same_dtype(self, "a", "b")
        shape = broadcast_shapes(cond.shape, self.operand("a").type.shape, self.operand("b").type.shape)  # type: ignore[union-attr]
        return [TensorType(shape, dtype)]


@register_op
class MatMul(Operation):
    """Numpy ``matmul`` of two tensors (rank >= 2; leading axes broadcast). Constant right-hand sides of
    rank 2 are turned into ``nn.linear`` by the frontend."""

    name = "math.matmul"
    operands = (Operand("lhs"), Operand("rhs"))

    def infer_types(self) -> list[TensorType]:
        a, b = self.operand("lhs").type, self.operand("rhs").type  # type: ignore[union-attr]
        dtype = _same_dtype(self, "lhs", "rhs")
        check(a.rank >= 2 and b.rank >= 2, f"{self.name}: operands must have rank >= 2")
        check(a.shape[-1] is None or b.shape[-2] is None or a.shape[-1] == b.shape[-2],
              f"{self.name}: inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return [TensorType((*batch, a.shape[-2], b.shape[-1]), dtype)]
