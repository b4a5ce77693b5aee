"""The ``recognize-kwta`` pass: k-WTA subgraphs become one ``sparse.kwta`` op.

Expects: a cleaned-up import (constants folded, casts to the same type and identities removed). Recognises
the two forms in which exporters write k-WTA (DESIGN.md §2):

* ties kept::

      boosted = x * F            (F constant, broadcast to x; absent without boosting)
      [boosted', x'] = reshape(boosted|x, (N, -1))          (optional, global k-WTA of NCHW tensors)
      thr = slice(topk(boosted', K, axis=a).values, k-1:k, axis=a)
      out = where(boosted' < thr, 0, x')                     (relu: where((b < thr) | (b <= 0), 0, x'))

* ties broken (exactly k): ``off = scatter_elements(ones_like(boosted'), topk(boosted', k).indices,
  zeros, axis=a)`` (the ones and zeros may be constants, ``full_like`` or expanded constants, and the
  mask may be reshaped back from the flattened form); ``out = where(off, 0, x')``.

Either form with relu: ``where(mask | (boosted <= 0), 0, x)`` (positive boost factors only).

Guarantees: the same function, with each recognised subgraph replaced by ``sparse.kwta(x, boost=F)``
(then ``nn.relu`` for the relu form, then the reshape the subgraph's output had, if any), whose result type
carries the ``#kwta<k, over>`` bound. Unrecognised subgraphs are left as they are (they still run).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import ops
from ..ir.core import Module, Operation, Value
from .base import Pass
from .canonicalize import CLEANUP_PATTERNS, constant_value, make_constant
from .rewrite import RewritePattern, Rewriter, apply_patterns


@dataclasses.dataclass(frozen=True)
class _Selection:
    x: Value  # the tensor whose units are selected, before any flattening reshape
    boost: np.ndarray | None  # boost factors at x's rank, or None
    over: tuple[int, ...]  # selection axes of x
    flat_shape: tuple[int, ...] | None  # the reshape target of the flattened form, if any


def _is_zero(value: Value) -> bool:
    data = constant_value(value)
    return data is not None and data.size >= 1 and not np.any(data)


def _is_all(value: Value, fill: bool) -> bool:
    """``value`` is a boolean tensor filled with ``fill``: a constant, a full_like, or an expanded constant."""
    owner = value.owner
    if isinstance(owner, ops.FullLike):
        return bool(owner.attr("value")) == fill and owner.attr("dtype") == "i1"
    if isinstance(owner, ops.Expand):
        return value.type.dtype == "i1" and _is_all(owner.operand("input"), fill)  # type: ignore[arg-type]
    data = constant_value(value)
    return data is not None and data.size >= 1 and bool(np.all(data == fill))


def _boost_factor(boosted: Value, x: Value) -> np.ndarray | bool | None:
    """How ``boosted`` derives from ``x``: False if it does not, None if it is ``x``, else the factor
    (a constant broadcast to x's rank, 1 along the batch axis)."""
    if boosted is x:
        return None
    mul = boosted.owner
    if not isinstance(mul, ops.Mul) or boosted.type.shape != x.type.shape:
        return False
    lhs, rhs = mul.operand("lhs"), mul.operand("rhs")
    factor = constant_value(rhs) if lhs is x else constant_value(lhs) if rhs is x else None  # type: ignore[arg-type]
    if factor is None or factor.ndim > x.type.rank:
        return False
    factor = factor.reshape((1,) * (x.type.rank - factor.ndim) + factor.shape)
    if factor.shape[0] != 1:
        return False
    return factor.astype(x.type.numpy_dtype)


def _is_flatten(value: Value) -> Value | None:
    """If ``value = reshape(v, (N, -1))`` flattening every non-batch axis of v (rank >= 3), return v."""
    owner = value.owner
    if not isinstance(owner, ops.Reshape):
        return None
    src = owner.operand("input")
    assert src is not None
    shape = owner.attr("shape")
    if len(shape) != 2 or src.type.rank < 2 or shape[0] not in (-1, src.type.shape[0]):
        return None
    return src if value.type.shape[0] == src.type.shape[0] else None


def _selection(boosted: Value, x: Value, axis: int) -> _Selection | None:
    """Relate the tensor TopK selected from (``boosted``) and the tensor Where keeps values of (``x``).

    Either both are the same rank (local / 1-D selection along ``axis``, or both already flattened), or
    both are flattenings ``reshape(., (N, -1))`` of an unflattened pair (global selection).
    """
    b_src, x_src = _is_flatten(boosted), _is_flatten(x)
    if b_src is not None and x_src is not None and axis == 1:
        flat_shape = x.owner.attr("shape")  # type: ignore[union-attr]
        if boosted.owner.attr("shape") != flat_shape:  # type: ignore[union-attr]
            return None
        factor = _boost_factor(b_src, x_src)
        if factor is False:
            return None
        return _Selection(x_src, factor, tuple(range(1, x_src.type.rank)), flat_shape)  # type: ignore[arg-type]
    factor = _boost_factor(boosted, x)
    if factor is False:
        return None
    return _Selection(x, factor, (axis,), None)  # type: ignore[arg-type]


def _threshold_k(thr: Value) -> tuple[Value, int, int] | None:
    """``thr = slice(topk(b, K).values, j:j+1, axis)`` -> (b, k = j + 1, axis)."""
    sl = thr.owner
    if not isinstance(sl, ops.Slice) or len(sl.attr("axes")) != 1 or sl.attr("steps") != (1,):
        return None
    top = sl.operand("input").owner  # type: ignore[union-attr]
    if not isinstance(top, ops.TopK) or sl.operand("input") is not top.results[0]:
        return None
    if not top.attr("largest") or not top.attr("sorted"):
        return None
    src = top.operand("input")
    assert src is not None
    axis = top.attr("axis") % src.type.rank
    start, end = sl.attr("starts")[0], sl.attr("ends")[0]
    if sl.attr("axes")[0] % src.type.rank != axis or start < 0 or end != start + 1 or start >= top.attr("k"):
        return None
    return src, start + 1, axis


def _unflattened_threshold(thr: Value, boosted: Value) -> tuple[Value, int, int] | None:
    """``thr = reshape(slice(topk(flatten(boosted))), (N, 1, ..., 1))`` -> (boosted, k, 1)."""
    owner = thr.owner
    if not isinstance(owner, ops.Reshape) or thr.type.rank != boosted.type.rank:
        return None
    if any(d != 1 for d in thr.type.shape[1:]):
        return None
    found = _threshold_k(owner.operand("input"))  # type: ignore[arg-type]
    if found is None or found[2] != 1 or _is_flatten(found[0]) is not boosted:
        return None
    return boosted, found[1], 1


_Match = tuple[_Selection, int, str, tuple[Value, ...]]  # selection, k, ties, the boosted tensors seen


def _split_relu(cond: Value) -> tuple[Value, Value | None]:
    """``mask | (b <= 0)`` -> (mask, b): the relu option of k-WTA. Otherwise (cond, None)."""
    owner = cond.owner
    if not isinstance(owner, ops.Or):
        return cond, None
    parts = [owner.operand("lhs"), owner.operand("rhs")]
    nonpos = [p for p in parts if isinstance(p.owner, ops.LessEqual) and _is_zero(p.owner.operand("rhs"))]  # type: ignore[union-attr,arg-type]
    if len(nonpos) != 1:
        return cond, None
    mask = parts[1] if parts[0] is nonpos[0] else parts[0]
    return mask, nonpos[0].owner.operand("lhs")  # type: ignore[union-attr,return-value]


def _ties_kept(mask: Value, x: Value) -> _Match | None:
    less = mask.owner
    if not isinstance(less, ops.Less):
        return None
    boosted, thr = less.operand("lhs"), less.operand("rhs")
    assert boosted is not None and thr is not None
    if (found := _threshold_k(thr)) is not None and found[0] is boosted:
        sel = _selection(boosted, x, found[2])
        seen: tuple[Value, ...] = (boosted, *filter(None, [_is_flatten(boosted)]))
    elif (found := _unflattened_threshold(thr, boosted)) is not None:
        # thr = reshape(slice(topk(flatten(b))), (N, 1, ..., 1)) compared with the unflattened b
        factor = _boost_factor(boosted, x)
        sel = None if factor is False else _Selection(x, factor, tuple(range(1, x.type.rank)), None)  # type: ignore[arg-type]
        seen = (boosted,)
    else:
        return None
    return None if sel is None else (sel, found[1], "keep", seen)


def _ties_broken(mask: Value, x: Value) -> _Match | None:
    """``off = scatter(ones, topk(b, k).indices, zeros)``, optionally reshaped back to x's shape."""
    scatter = mask.owner
    unflatten = isinstance(scatter, ops.Reshape)
    if unflatten:
        if mask.type.shape != x.type.shape:
            return None
        scatter = scatter.operand("input").owner  # type: ignore[union-attr]
    if not isinstance(scatter, ops.ScatterElements):
        return None
    if not _is_all(scatter.operand("data"), True) or not _is_all(scatter.operand("updates"), False):  # type: ignore[arg-type]
        return None
    top = scatter.operand("indices").owner  # type: ignore[union-attr]
    if not isinstance(top, ops.TopK) or scatter.operand("indices") is not top.results[1] or not top.attr("largest"):
        return None
    boosted = top.operand("input")
    assert boosted is not None
    axis = top.attr("axis") % boosted.type.rank
    if scatter.attr("axis") % boosted.type.rank != axis or scatter.result.type.shape != boosted.type.shape:
        return None
    source = _is_flatten(boosted)
    if unflatten:
        # the selection ran on flatten(b) and the mask was reshaped back: global k-WTA of x
        factor = _boost_factor(source, x) if source is not None and axis == 1 else False
        sel = None if factor is False else _Selection(x, factor, tuple(range(1, x.type.rank)), None)  # type: ignore[arg-type]
    else:
        sel = _selection(boosted, x, axis)
    return None if sel is None else (sel, top.attr("k"), "break", (boosted, *filter(None, [source])))


class RecognizeKWTA(RewritePattern):
    """Matches ``where(mask, 0, x)`` whose mask is one of the k-WTA forms (module docstring)."""

    op_type = ops.Where

    def match_and_rewrite(self, op: Operation, rewriter: Rewriter) -> bool:
        x, cond = op.operand("b"), op.operand("cond")
        assert x is not None and cond is not None
        if not _is_zero(op.operand("a")) or op.result.type.shape != x.type.shape:  # type: ignore[arg-type]
            return False
        mask, relu_of = _split_relu(cond)
        found = _ties_kept(mask, x) or _ties_broken(mask, x)
        if found is None:
            return False
        sel, k, ties, boosted = found
        if relu_of is not None:
            # (b <= 0) is (x <= 0) only for positive boost factors, and b must be the selected tensor
            positive = sel.boost is None or bool(np.all(sel.boost > 0))
            if not positive or not any(relu_of is b for b in (*boosted, sel.x)):
                return False
        boost = None
        if sel.boost is not None:
            boost = make_constant(rewriter, op, sel.boost, f"{op.result.name}_boost")
        out = rewriter.create(op, ops.KWinners, sel.x, boost=boost, k=k, over=sel.over, ties=ties).result
        if relu_of is not None:
            out = rewriter.create(op, ops.Relu, out).result
        if sel.flat_shape is not None:
            out = rewriter.create(op, ops.Reshape, out, shape=sel.flat_shape).result
        rewriter.replace_op(op, [out])
        return True


@dataclasses.dataclass
class RecognizeKWTAPass(Pass):
    """Replace exported k-WTA subgraphs by one sparse.kwta op (the frontend runs it on import)."""

    name = "recognize-kwta"

    def apply(self, module: Module) -> None:
        apply_patterns(module, (*CLEANUP_PATTERNS, RecognizeKWTA()))
