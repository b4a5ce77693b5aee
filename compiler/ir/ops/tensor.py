"""Data-movement and selection ops (``tensor.*``)."""

from __future__ import annotations

from ..attributes import check
from ..core import Operation, attr_def, operand_def, register_op, var_operand_def
from ..shapes import broadcast_shapes, normalize_axis, reshape_output
from ..types import DTYPES, KWTABound, TensorType


@register_op
class Identity(Operation):
    """Returns its input. ``canonicalize`` removes it."""

    name = "tensor.identity"
    input = operand_def()

    def infer_types(self) -> list[TensorType]:
        return [self.input.type]


@register_op
class Reshape(Operation):
    """Row-major reshape to ``shape`` (positive dims and at most one -1, which is inferred; a dynamic batch
    is written as -1). Keeps a k-WTA bound over all non-batch axes when the batch axis is kept."""

    name = "tensor.reshape"
    input = operand_def()
    shape = attr_def("ints")

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        shape = reshape_output(x.shape, self.shape)
        bound = x.encoding if isinstance(x.encoding, KWTABound) else None
        keeps = (
            bound is not None
            and x.rank >= 2
            and len(shape) >= 2
            and bound.over == tuple(range(1, x.rank))
            and shape[0] == x.shape[0]
        )
        kept = KWTABound(bound.k, tuple(range(1, len(shape)))) if bound is not None and keeps else None
        return [TensorType(shape, x.dtype, kept)]


@register_op
class Transpose(Operation):
    """Permute axes: output axis i is input axis ``perm[i]``."""

    name = "tensor.transpose"
    input = operand_def()
    perm = attr_def("ints")

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        perm = self.perm
        check(sorted(perm) == list(range(x.rank)),
              f"{self.name}: perm {list(perm)} is not a permutation of {x.rank} axes")
        return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


@register_op
class Concat(Operation):
    """Concatenate along ``axis``; all inputs share dtype and the other dimensions."""

    name = "tensor.concat"
    inputs = var_operand_def()
    axis = attr_def(int)

    def infer_types(self) -> list[TensorType]:
        types = [v.type for v in self.inputs]
        check(len(types) >= 1, f"{self.name}: needs at least one input")
        rank = types[0].rank
        axis = normalize_axis(self.axis, rank)
        check(all(t.rank == rank for t in types), f"{self.name}: inputs must share one rank")
        check(len({t.dtype for t in types}) == 1, f"{self.name}: inputs must share one dtype")
        shape: list[int | None] = []
        for a in range(rank):
            dims = [t.shape[a] for t in types]
            if a == axis:
                static_dims = [d for d in dims if d is not None]
                shape.append(sum(static_dims) if len(static_dims) == len(dims) else None)
            else:
                static = {d for d in dims if d is not None}
                check(len(static) <= 1, f"{self.name}: inputs differ in dimension {a}: {dims}")
                shape.append(static.pop() if static else None)
        return [TensorType(tuple(shape), types[0].dtype)]


def slice_dim(size: int | None, start: int, end: int, step: int) -> int | None:
    """Length of ``range(size)[start:end:step]`` (None for a dynamic size)."""
    if size is None:
        return None
    return len(range(size)[slice(start, end, step)])


@register_op
class Slice(Operation):
    """``x[start:end:step]`` along each listed axis (Python slicing rules, ends clamped)."""

    name = "tensor.slice"
    input = operand_def()
    starts = attr_def("ints")
    ends = attr_def("ints")
    axes = attr_def("ints")
    steps = attr_def("ints")

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        starts, ends, axes, steps = self.starts, self.ends, self.axes, self.steps
        check(len(starts) == len(ends) == len(axes) == len(steps),
              f"{self.name}: starts/ends/axes/steps differ in length")
        check(all(s != 0 for s in steps), f"{self.name}: steps must be non-zero")
        shape = list(x.shape)
        seen = set()
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            a = normalize_axis(axis, x.rank)
            check(a not in seen, f"{self.name}: axis {a} sliced twice")
            seen.add(a)
            # the dynamic batch may only be kept whole: any other slice of it would change the batch size
            check(x.shape[a] is not None or (start == 0 and end >= 2**31 - 1 and step == 1),
                  f"{self.name}: slicing the dynamic batch axis {a} ({start}:{end}:{step}) is not supported")
            shape[a] = slice_dim(x.shape[a], start, end, step)
        return [TensorType(tuple(shape), x.dtype)]


@register_op
class Gather(Operation):
    """Take ``indices`` (int, negative counts from the end) along ``axis``, as ONNX Gather."""

    name = "tensor.gather"
    input = operand_def()
    indices = operand_def()
    axis = attr_def(int, 0)

    def infer_types(self) -> list[TensorType]:
        x, idx = self.input.type, self.indices.type
        check(idx.dtype in ("i64", "i32"), f"{self.name}: indices must be integers, got {idx.dtype}")
        a = normalize_axis(self.axis, x.rank)
        return [TensorType((*x.shape[:a], *idx.shape, *x.shape[a + 1 :]), x.dtype)]


@register_op
class TopK(Operation):
    """The ``k`` largest (or smallest) values along ``axis`` and their indices (i64).

    Sorted by value; among equal values the lower index comes first (ONNX TopK).
    """

    name = "tensor.topk"
    input = operand_def()
    k = attr_def(int)
    axis = attr_def(int, -1)
    largest = attr_def(bool, True)
    sorted = attr_def(bool, True)
    num_results = 2

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        a = normalize_axis(self.axis, x.rank)
        k = self.k
        check(k >= 0, f"{self.name}: k must be >= 0")
        check(x.dtype != "i1", f"{self.name}: the input must be numeric, not boolean")
        check(x.shape[a] is None or k <= x.shape[a], f"{self.name}: k={k} exceeds axis size {x.shape[a]}")
        shape = (*x.shape[:a], k, *x.shape[a + 1 :])
        return [TensorType(shape, x.dtype), TensorType(shape, "i64")]


@register_op
class ScatterElements(Operation):
    """ONNX ScatterElements without reduction: a copy of ``data`` with ``updates`` written at ``indices``
    along ``axis`` (``out[..., indices[i,j], ...] = updates[i, j]``)."""

    name = "tensor.scatter_elements"
    data = operand_def()
    indices = operand_def()
    updates = operand_def()
    axis = attr_def(int, 0)

    def infer_types(self) -> list[TensorType]:
        data, idx, upd = self.data.type, self.indices.type, self.updates.type
        check(idx.dtype in ("i64", "i32"), f"{self.name}: indices must be integers")
        check(idx.rank == data.rank and upd.rank == data.rank, f"{self.name}: data, indices, updates need one rank")
        check(upd.dtype == data.dtype, f"{self.name}: updates and data differ in dtype")
        normalize_axis(self.axis, data.rank)
        return [data.with_encoding(None)]


@register_op
class FullLike(Operation):
    """A tensor of ``like``'s shape filled with ``value`` converted to ``dtype`` (ONNX ConstantOfShape of a
    Shape, which appears with a dynamic batch)."""

    name = "tensor.full_like"
    like = operand_def()
    value = attr_def(float)
    dtype = attr_def(str, choices=tuple(DTYPES))

    def infer_types(self) -> list[TensorType]:
        return [TensorType(self.like.type.shape, self.dtype)]


@register_op
class Expand(Operation):
    """Broadcast ``input`` to ``shape`` (numpy rules; -1 in ``shape`` stands for the dynamic batch and
    broadcasts like 1)."""

    name = "tensor.expand"
    input = operand_def()
    shape = attr_def("ints")

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        target = tuple(None if d == -1 else d for d in self.shape)
        return [TensorType(broadcast_shapes(x.shape, target), x.dtype)]
