"""The ``recognize-kwta`` pass: k-WTA subgraphs become one ``sparse.kwta`` op.

Expects: a cleaned-up import (constants folded, casts to the same type and identities removed). Recognises
the two forms in which exporters write k-WTA (DESIGN.md §2):

* ties kept::

      boosted = x * F            (F constant, broadcast to x; absent without boosting)
      [boosted', x'] = reshape(boosted|x, (N, -1))          (optional, global k-WTA of NCHW tensors)
      thr = slice(topk(boosted', K, axis=a).values, k-1:k, axis=a)
      out = where(boosted' < thr, 0, x')                     (relu: where((b < thr) | (b <= 0), 0, x'))

* ties broken (exactly k): ``off = scatter_elements(ones_like(boosted'), topk(boosted', k).indices,
  zeros, axis=a)``; ``out = where(off, 0, x')``.

Guarantees: the same function, with each recognised subgraph replaced by ``sparse.kwta(x, boost=F)``
(then ``nn.relu`` for the relu form, then the reshape the subgraph's output had), whose result type
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
    """``value`` is a boolean tensor filled with ``fill`` (a constant or a full_like)."""
    owner = value.owner
    if isinstance(owner, ops.FullLike):
        return bool(owner.attr("value")) == fill and owner.attr("dtype") == "i1"
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


class RecognizeKWTA(RewritePattern):
    """Matches ``where(mask, 0, x)`` whose mask is one of the k-WTA forms (module docstring)."""

    op_type = ops.Where

    def match_and_rewrite(self, op: Operation, rewriter: Rewriter) -> bool:
        if not _is_zero(op.operand("a")):  # type: ignore[arg-type]
            return False
        x = op.operand("b")
        assert x is not None
        found = self._ties_kept(op.operand("cond"), x) or self._ties_broken(op.operand("cond"), x)  # type: ignore[arg-type]
        if found is None:
            return False
        sel, k, ties, relu = found
        if op.result.type.shape != (x.type.shape) or k < 1:
            return False
        boost = None
        if sel.boost is not None:
            boost = make_constant(rewriter, op, sel.boost, f"{op.result.name}_boost")
        out = rewriter.create(op, ops.KWinners, sel.x, boost=boost, k=k, over=sel.over, ties=ties).result
        if relu:
            out = rewriter.create(op, ops.Relu, out).result
        if sel.flat_shape is not None:
            out = rewriter.create(op, ops.Reshape, out, shape=sel.flat_shape).result
        rewriter.replace_op(op, [out])
        return True

    @staticmethod
    def _ties_kept(cond: Value, x: Value) -> tuple[_Selection, int, str, bool] | None:
        relu = False
        owner = cond.owner
        if isinstance(owner, ops.Or):  # (b < thr) | (b <= 0): k-WTA followed by ReLU
            parts = [owner.operand("lhs"), owner.operand("rhs")]
            less = [p for p in parts if isinstance(p.owner, ops.Less)]  # type: ignore[union-attr]
            nonpos = [p for p in parts if isinstance(p.owner, ops.LessEqual)]  # type: ignore[union-attr]
            if len(less) != 1 or len(nonpos) != 1:
                return None
            le = nonpos[0].owner  # type: ignore[union-attr]
            if le.operand("lhs") is not less[0].owner.operand("lhs") or not _is_zero(le.operand("rhs")):  # type: ignore[union-attr]
                return None
            owner, relu = less[0].owner, True  # type: ignore[union-attr]
        if not isinstance(owner, ops.Less):
            return None
        boosted, thr = owner.operand("lhs"), owner.operand("rhs")
        assert boosted is not None and thr is not None
        if (found := _threshold_k(thr)) is not None and found[0] is boosted:
            sel = _selection(boosted, x, found[2])
        elif (found := _unflattened_threshold(thr, boosted)) is not None:
            # thr = reshape(slice(topk(flatten(b))), (N, 1, ..., 1)) compared with the unflattened b
            factor = _boost_factor(boosted, x)
            sel = None if factor is False else _Selection(x, factor, tuple(range(1, x.type.rank)), None)  # type: ignore[arg-type]
        else:
            return None
        return None if sel is None else (sel, found[1], "keep", relu)

    @staticmethod
    def _ties_broken(cond: Value, x: Value) -> tuple[_Selection, int, str, bool] | None:
        scatter = cond.owner
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
        sel = _selection(boosted, x, axis)
        return None if sel is None else (sel, top.attr("k"), "break", False)


@dataclasses.dataclass
class RecognizeKWTAPass(Pass):
    """Replace k-WTA subgraphs by ``sparse.kwta`` (see module docstring); the frontend runs it on import."""

    name = "recognize-kwta"

    def apply(self, module: Module) -> None:
        apply_patterns(module, (*CLEANUP_PATTERNS, RecognizeKWTA()))
