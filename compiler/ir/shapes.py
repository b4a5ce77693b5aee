"""Shape arithmetic shared by type inference, the frontend and the targets. ``None`` is a dynamic dimension."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import VerificationError

Shape = tuple[int | None, ...]


def broadcast_shapes(*shapes: Sequence[int | None]) -> Shape:
    """Numpy/ONNX multidirectional broadcasting; a dynamic dim broadcast against n > 1 becomes n."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for axis in range(rank):
        dims = [s[len(s) - rank + axis] for s in shapes if len(s) - rank + axis >= 0]
        static = {d for d in dims if d is not None and d != 1}
        if len(static) > 1:
            raise VerificationError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        if static:
            out.append(static.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def window_output_dim(size: int | None, kernel: int, stride: int, pad_begin: int, pad_end: int,
                      dilation: int = 1, ceil_mode: bool = False) -> int | None:
    """Output length of a convolution or pooling window along one axis."""
    if size is None:
        return None
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0:
        raise VerificationError(f"window of {kernel} (dilation {dilation}) does not fit an input of {size} + padding")
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1  # the last window must start inside the input or the begin padding (ONNX/PyTorch rule)
    return out


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise VerificationError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def reshape_output(in_shape: Sequence[int | None], target: Sequence[int]) -> Shape:
    """The shape produced by reshaping ``in_shape`` to ``target`` (positive dims and at most one -1)."""
    if sum(1 for d in target if d == -1) > 1:
        raise VerificationError(f"reshape target {list(target)} has more than one -1")
    if any(d < -1 or d == 0 for d in target):
        raise VerificationError(f"reshape target {list(target)} may only hold positive dims and one -1")
    known_out = math.prod(d for d in target if d != -1)
    numel = static_numel(in_shape)
    if numel is not None:
        if -1 in target:
            if known_out == 0 or numel % known_out:
                raise VerificationError(f"cannot reshape {list(in_shape)} to {list(target)}")
            return tuple(numel // known_out if d == -1 else d for d in target)
        if numel != known_out:
            raise VerificationError(f"cannot reshape {list(in_shape)} ({numel} elements) to {list(target)}")
        return tuple(target)
    if -1 not in target:
        raise VerificationError(f"reshape of dynamic shape {list(in_shape)} to a static {list(target)}")
    return tuple(None if d == -1 else d for d in target)


def static_numel(shape: Sequence[int | None]) -> int | None:
    """The number of elements of ``shape``, or None when a dimension is dynamic."""
    dims = [d for d in shape if d is not None]
    return math.prod(dims) if len(dims) == len(shape) else None
