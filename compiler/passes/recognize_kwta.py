"""The ``recognize-kwta`` pass: k-WTA subgraphs become one ``sparse.kwta`` op, by meaning, not by one shape.

Expects: a cleaned-up import (constants folded, casts to the same type and identities removed).

A k-WTA (DESIGN.md §2) is an output that keeps ``x`` where the (optionally boosted) value is not below a
per-group threshold equal to the k-th largest boosted value, and 0 elsewhere. The pattern starts at the
*selection* and follows the data flow back, accepting every way real code and the torch exporters write
each part:

* selection: ``where(off, 0, x)``, ``where(keep, x, 0)`` (the zero a constant or an expanded constant),
  ``x * cast(keep)``, ``x * onehot``; ``not`` flips a mask; the relu option ``off | (boosted <= 0)``
  (``keep & (boosted > 0)``);
* ties kept: the mask compares the boosted tensor with the threshold: ``b < t``, ``t > b``, ``not(b >= t)``,
  ``b >= t``, ``t <= b``; the threshold is one position of the TopK values along the TopK axis (``Slice``
  ``j:j+1`` or ``-1:``, ``Gather j`` / ``-1``, ``ReduceMin`` which the frontend turns into that slice), then
  any ``Reshape`` (``Unsqueeze``, ``View``) and ``Expand``; ``k = j + 1`` (a fully sorted ascending TopK, as
  ``sort`` exports, counts from the other end);
* ties broken (exactly k): ``scatter_elements(all-true, topk.indices, all-false)`` (the losers) or
  ``scatter_elements(all-zero, topk.indices, all-one)`` (the winners, bool or float one-hot), optionally
  reshaped back from the flattened layout and cast;
* layout: the TopK runs on the boosted tensor itself (1-D units along axis 1, or channels per position
  along axis 1 of NCHW: ``local``), or on its flattening ``reshape(b, (N, -1))`` (global over C·H·W) with
  the comparison/mask in the flattened layout or in the original one against a reshaped/broadcast
  threshold;
* boost: ``b = x * F`` or ``F * x`` with ``F`` a constant (``exp(-s * duty)`` folded by canonicalize or by
  the exporter), broadcast to ``x`` and constant over the batch; or ``b = x``.

Guarantees: the same function, with each recognised subgraph replaced by ``sparse.kwta(x, boost=F)``
(then ``nn.relu`` for the relu form, then the reshape to the flattened layout if the output had it), whose
result type carries the ``#kwta<k, over>`` bound. Unrecognised subgraphs are left as they are (they run
dense); every TopK that still feeds a mask afterwards is reported by :func:`unrecognised_kwta` and the
pass warns about it (:class:`~sparsecc.compiler.errors.KWTANotRecognisedWarning`, one per node).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping

import numpy as np

from ..errors import KWTANotRecognisedWarning
from ..ir import ops
from ..ir.core import Module, Operation, Value
from .base import Pass
from .canonicalize import CLEANUP_PATTERNS, constant_value, make_constant
from .rewrite import RewritePattern, Rewriter, apply_patterns


class NoMatch(Exception):
    """Why a candidate is not a k-WTA; ``topk`` is the TopK it concerns, when the walk got that far."""

    def __init__(self, reason: str, topk: Operation | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.topk = topk


@dataclasses.dataclass(frozen=True)
class KWTAMatch:
    """A recognised k-WTA: ``sparse.kwta(x, boost)`` over ``over`` with ``k`` and ``ties``."""

    x: Value  # the selected tensor in its own (unflattened) layout
    boost: np.ndarray | None  # boost factors at x's rank, or None
    k: int
    over: tuple[int, ...]
    ties: str
    relu: bool
    flat_shape: tuple[int, ...] | None  # the selection ran in this flattened layout of x
    topk: ops.TopK


# -- small facts about values ----------------------------------------------------------------------------------
def _filled_with(value: Value) -> float | None:
    """The one number every element of ``value`` holds (in ``value``'s dtype), when it is a constant, a
    full_like, or a constant expanded, reshaped or cast; None otherwise."""
    owner = value.owner
    if isinstance(owner, ops.FullLike):
        fill: float | None = float(owner.value)
    elif isinstance(owner, ops.Expand | ops.Reshape | ops.Cast):
        fill = _filled_with(owner.input)
    else:
        data = constant_value(value)
        if data is None or data.size == 0:
            return None
        first = data.reshape(-1)[0]
        fill = float(first) if bool(np.all(data == first)) else None
    return None if fill is None else float(np.asarray(fill).astype(value.type.numpy_dtype))


def _is_zero(value: Value) -> bool:
    return _filled_with(value) == 0.0


def _flatten_source(value: Value) -> Value | None:
    """If ``value = reshape(v, (N, M))`` keeping the batch axis of v (rank >= 3), return v."""
    owner = value.owner
    if not isinstance(owner, ops.Reshape) or value.type.rank != 2:
        return None
    src = owner.input
    if src.type.rank < 3 or value.type.shape[0] != src.type.shape[0]:
        return None
    return src


def _boost_factor(boosted: Value, x: Value) -> np.ndarray | None:
    """How ``boosted`` derives from ``x``: None if it is ``x``, else the constant factor at x's rank."""
    if boosted is x:
        return None
    mul = boosted.owner
    if not isinstance(mul, ops.Mul):
        raise NoMatch("the compared values are neither x nor x times a constant boost factor")
    lhs, rhs = mul.lhs, mul.rhs
    other = rhs if lhs is x else lhs if rhs is x else None
    factor = constant_value(other) if other is not None else None
    if factor is None:
        raise NoMatch("the compared values are neither x nor x times a constant boost factor")
    if boosted.type.shape != x.type.shape or factor.ndim > x.type.rank:
        raise NoMatch("the boost factor changes the shape of x")
    factor = factor.reshape((1,) * (x.type.rank - factor.ndim) + factor.shape)
    if factor.shape[0] != 1:
        raise NoMatch("the boost factor varies along the batch axis")
    return factor.astype(x.type.numpy_dtype)


# -- the threshold ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Threshold:
    topk: ops.TopK
    k: int
    axis: int  # TopK axis of its input


def _kth_position(top: ops.TopK, j: int) -> int:
    """k for the threshold ``values[j]`` of ``top`` (largest first; a full ascending sort from the end)."""
    if not top.sorted:
        raise NoMatch("the threshold is read from unsorted TopK values", top)
    if top.largest:
        return j + 1
    size = top.input.type.shape[top.axis % top.input.type.rank]
    if size is None or top.k != size:
        raise NoMatch("TopK(largest=0) selects the smallest values", top)
    return size - j


def _position(start: int, end: int, step: int, k: int) -> int | None:
    picked = range(k)[slice(start, end, step)]
    return picked[0] if len(picked) == 1 else None


def _threshold(value: Value) -> _Threshold | None:
    """Follow ``value`` back through Expand (broadcast) then Reshape (same elements, same order) to one
    position of TopK values (None: no TopK there)."""
    while isinstance(value.owner, ops.Expand):
        value = value.owner.input
    while isinstance(value.owner, ops.Reshape):
        value = value.owner.input
    owner = value.owner
    if isinstance(owner, ops.Expand):
        return None  # broadcast, then reshaped: not one value per group
    j: int | None
    if isinstance(owner, ops.Slice):
        values = owner.input
        top = values.owner
        if not isinstance(top, ops.TopK) or values is not top.results[0]:
            return None
        axis = top.axis % values.type.rank
        if len(owner.axes) != 1 or owner.axes[0] % values.type.rank != axis:
            raise NoMatch("the threshold slices the TopK values along another axis", top)
        j = _position(owner.starts[0], owner.ends[0], owner.steps[0], top.k)
    elif isinstance(owner, ops.Gather):
        values = owner.input
        top = values.owner
        if not isinstance(top, ops.TopK) or values is not top.results[0]:
            return None
        axis = top.axis % values.type.rank
        index = constant_value(owner.indices)
        if owner.axis % values.type.rank != axis or index is None or index.size != 1:
            raise NoMatch("the threshold gathers the TopK values other than one position along its axis", top)
        j = int(index.reshape(-1)[0])
        j = j + top.k if j < 0 else j
        j = j if 0 <= j < top.k else None
    elif isinstance(owner, ops.TopK):
        raise NoMatch("the mask compares with all TopK values, not one position of them", owner)
    else:
        return None
    if j is None:
        raise NoMatch("the threshold is not exactly one position of the TopK values", top)
    return _Threshold(top, _kth_position(top, j), axis)


def _threshold_shape(value: Value) -> tuple[int | None, ...]:
    """The shape of the threshold before it is broadcast by Expand."""
    while isinstance(value.owner, ops.Expand):
        value = value.owner.input
    return value.type.shape


# -- the mask --------------------------------------------------------------------------------------------------
_LESS: dict[type[Operation], str] = {ops.Less: "<", ops.LessEqual: "<=", ops.Greater: ">", ops.GreaterEqual: ">="}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NAMES: dict[type[Operation], str] = {
    ops.Less: "Less", ops.LessEqual: "LessOrEqual", ops.Greater: "Greater", ops.GreaterEqual: "GreaterOrEqual",
}


def _peel_relu(mask: Value, off: bool) -> tuple[Value, Value | None]:
    """``off | (v <= 0)`` / ``keep & (v > 0)`` -> (the k-WTA mask, v); otherwise (mask, None)."""
    owner = mask.owner
    if not isinstance(owner, ops.Or if off else ops.And):
        return mask, None
    for part, other in ((owner.lhs, owner.rhs), (owner.rhs, owner.lhs)):
        cmp = part.owner
        if not isinstance(cmp, ops.CompareOp) or type(cmp) not in _LESS:
            continue
        lhs, rhs = cmp.lhs, cmp.rhs
        rel = _LESS[type(cmp)]
        if _is_zero(rhs):
            subject = lhs
        elif _is_zero(lhs):
            subject, rel = rhs, _MIRROR[rel]
        else:
            continue
        if rel == ("<=" if off else ">"):
            return other, subject
    return mask, None


def _compare(cmp: ops.CompareOp, off: bool, x: Value) -> tuple[Value, _Threshold, Value]:
    """A ties-kept mask ``cmp``: (the compared boosted tensor, its threshold, the threshold value)."""
    lhs, rhs = cmp.lhs, cmp.rhs
    rel = _LESS[type(cmp)]
    found = _threshold(rhs)
    if found is not None:
        boosted, thr = lhs, rhs
    elif (found := _threshold(lhs)) is not None:
        boosted, thr, rel = rhs, lhs, _MIRROR[rel]
    else:
        raise NoMatch("the mask compares with no position of TopK values")
    # the mask must zero exactly the units whose boosted value is below the threshold
    zero_rel = rel if off else {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[rel]
    name = _NAMES[type(cmp)]
    if zero_rel == "<=":
        raise NoMatch(f"{name} zeroes the units tied with the threshold (k-WTA keeps them)", found.topk)
    if zero_rel in (">", ">="):
        raise NoMatch(f"{name} zeroes the winners, not the losers", found.topk)
    return boosted, found, thr


def _scatter_mask(mask: Value, off: bool) -> tuple[ops.ScatterElements, ops.TopK] | None:
    """A ties-broken mask (possibly reshaped and cast): (the scatter, its TopK); None if not a scatter."""
    scatter = mask.owner
    while isinstance(scatter, ops.Reshape | ops.Cast):
        scatter = scatter.input.owner
    if not isinstance(scatter, ops.ScatterElements):
        return None
    indices = scatter.indices
    top = indices.owner
    if not isinstance(top, ops.TopK) or indices is not top.results[1]:
        raise NoMatch("the scattered indices are not TopK indices")
    if not top.largest:
        raise NoMatch("TopK(largest=0) selects the smallest values", top)
    base, update = _filled_with(scatter.data), _filled_with(scatter.updates)
    marks_winners = base == 0.0 and update not in (None, 0.0)
    marks_losers = base not in (None, 0.0) and update == 0.0
    if not (marks_winners or marks_losers):
        raise NoMatch("the scatter of TopK indices is not a 0/1 mask", top)
    if marks_losers != off:
        raise NoMatch("the scattered mask zeroes the winners, not the losers", top)
    if update not in (0.0, 1.0) and mask.type.dtype != "i1":
        raise NoMatch("the one-hot mask scales x (its ones are not 1)", top)
    group = top.input
    if scatter.axis % group.type.rank != top.axis % group.type.rank:
        raise NoMatch("the scatter runs along another axis than the TopK", top)
    if scatter.result.type.shape != group.type.shape:
        raise NoMatch("the scattered mask does not have the shape of the TopK input", top)
    return scatter, top


# -- layout: how the selected group relates to x ---------------------------------------------------------------
def _group(x: Value, boosted: Value, group: Value, axis: int, flat_mask: bool,
           top: ops.TopK) -> tuple[Value, np.ndarray | None, tuple[int, ...], tuple[int, ...] | None]:
    """(x in its own layout, boost, selection axes, flattened shape of the output or None).

    ``group`` is the TopK input; ``boosted`` the tensor compared with the threshold (or, for scatters, the
    TopK input too); ``flat_mask``: the mask was computed in the flattened layout and reshaped to x's.
    """
    if group is boosted and not flat_mask:
        b_src, x_src = _flatten_source(boosted), _flatten_source(x)
        if b_src is not None and x_src is not None and isinstance(x.owner, ops.Reshape) and axis == 1:
            # both flattened (compare in the flattened layout, output reshaped back by the user's code)
            flat_shape = x.owner.shape
            return x_src, _boost_factor(b_src, x_src), tuple(range(1, x_src.type.rank)), flat_shape
        return x, _boost_factor(boosted, x), (axis,), None
    source = _flatten_source(group)
    if source is None or axis != 1 or (source is not boosted and not flat_mask):
        raise NoMatch("the TopK input is neither the compared tensor nor its flattening (N, -1)", top)
    if flat_mask:
        boosted = source
    if boosted.type.shape != x.type.shape:
        raise NoMatch("the compared tensor and x differ in shape", top)
    return x, _boost_factor(boosted, x), tuple(range(1, x.type.rank)), None


def _mask_and_x(op: Operation) -> tuple[Value, Value, bool] | None:
    """The selection: (x, mask, off) where ``off`` says the mask marks the zeroed units; None if ``op`` is
    not a selection of the form ``where(off, 0, x)``, ``where(keep, x, 0)`` or ``x * keep``."""
    if isinstance(op, ops.Where):
        if _is_zero(op.a):
            x, mask, off = op.b, op.cond, True
        elif _is_zero(op.b):
            x, mask, off = op.a, op.cond, False
        else:
            return None
    elif isinstance(op, ops.Mul):
        if _is_mask_like(op.rhs):
            x, mask = op.lhs, op.rhs
        elif _is_mask_like(op.lhs):
            x, mask = op.rhs, op.lhs
        else:
            return None
        off = False
        while isinstance(mask.owner, ops.Cast) and mask.owner.input.type.dtype == "i1":
            mask = mask.owner.input
    else:
        return None
    if op.result.type.shape != x.type.shape:
        return None
    return x, mask, off


def _is_mask_like(value: Value) -> bool:
    """A 0/1 tensor: a cast of booleans or a scatter into zeros (one-hot)."""
    owner = value.owner
    while isinstance(owner, ops.Reshape):
        owner = owner.input.owner
    if isinstance(owner, ops.Cast):
        return owner.input.type.dtype == "i1"
    return isinstance(owner, ops.ScatterElements) and _is_zero(owner.data)


def match_kwta(op: Operation) -> KWTAMatch | None:
    """The k-WTA that ``op`` (a selection) computes; None if ``op`` is no selection at all.

    Raises :class:`NoMatch` with the reason when ``op`` selects by a mask that is not a k-WTA.
    """
    found = _mask_and_x(op)
    if found is None:
        return None
    x, mask, off = found
    while isinstance(mask.owner, ops.Not):
        mask, off = mask.owner.input, not off
    mask, relu_of = _peel_relu(mask, off)
    while isinstance(mask.owner, ops.Not):
        mask, off = mask.owner.input, not off
    if isinstance(mask.owner, ops.CompareOp) and type(mask.owner) in _LESS:
        boosted, thr, thr_value = _compare(mask.owner, off, x)
        top, k, ties, axis = thr.topk, thr.k, "keep", thr.axis
        group = top.input
        _check_threshold_layout(thr_value, boosted, group, axis, top)
        x_src, boost, over, flat_shape = _group(x, boosted, group, axis, False, top)
    elif (scattered := _scatter_mask(mask, off)) is not None:
        scatter, top = scattered
        group = top.input
        k, ties, axis = top.k, "break", top.axis % group.type.rank
        flat_mask = scatter.result.type.shape != x.type.shape
        if flat_mask and mask.type.shape != x.type.shape:
            raise NoMatch("the scattered mask does not have the shape of x", top)
        boosted = group
        x_src, boost, over, flat_shape = _group(x, group, group, axis, flat_mask, top)
    else:
        raise NoMatch("the mask is neither a comparison with a TopK value nor a scatter of TopK indices")
    if relu_of is not None:
        if boost is not None and not bool(np.all(boost > 0)):
            raise NoMatch("the relu term (boosted <= 0) needs positive boost factors", top)
        tested = (x, x_src, boosted, group)
        if not any(relu_of is v or relu_of is _flatten_source(v) for v in tested):
            raise NoMatch("the relu term tests another tensor than x or its boosted values", top)
    return KWTAMatch(x_src, boost, k, over, ties, relu_of is not None, flat_shape, top)


def _check_threshold_layout(thr: Value, boosted: Value, group: Value, axis: int, top: Operation) -> None:
    """The threshold must be the TopK value of the compared unit's own group, broadcast along the group.

    Reshapes keep row-major order, so a threshold whose shape (before Expand) is the TopK input's with the
    TopK axis set to 1 holds group g's value at g's position; compared with the unflattened source of a
    (N, M) TopK input, a per-sample threshold must have shape (N, 1, ..., 1).
    """
    shape = _threshold_shape(thr)
    per_group = tuple(1 if i == axis else d for i, d in enumerate(group.type.shape))
    if boosted is group:
        if shape != per_group:
            raise NoMatch(f"the threshold of shape {_dims(shape)} is not one value per group of the TopK input "
                          f"{_dims(group.type.shape)}", top)
        return
    per_sample = (group.type.shape[0],) + (1,) * (boosted.type.rank - 1)
    if shape != per_sample:
        raise NoMatch(f"the threshold of shape {_dims(shape)} is not one value per sample {_dims(per_sample)}",
                      top)


def _dims(shape: tuple[int | None, ...]) -> str:
    return "x".join("N" if d is None else str(d) for d in shape) or "scalar"


class RecognizeKWTA(RewritePattern[ops.Where | ops.Mul]):
    """Replace a selection whose mask is a k-WTA (module docstring) by ``sparse.kwta``."""

    op_type = (ops.Where, ops.Mul)

    def match_and_rewrite(self, op: ops.Where | ops.Mul, rewriter: Rewriter) -> bool:
        try:
            found = match_kwta(op)
        except NoMatch:
            return False
        if found is None:
            return False
        boost = None
        if found.boost is not None:
            boost = make_constant(rewriter, op, found.boost, f"{op.result.name}_boost")
        out = rewriter.create(op, ops.KWinners, found.x, boost=boost, k=found.k, over=found.over,
                              ties=found.ties).result
        if found.relu:
            out = rewriter.create(op, ops.Relu, out).result
        if found.flat_shape is not None:
            out = rewriter.create(op, ops.Reshape, out, shape=found.flat_shape).result
        rewriter.replace_op(op, [out])
        return True


# -- diagnostics -----------------------------------------------------------------------------------------------
_MASK_OPS = (ops.CompareOp, ops.ScatterElements, ops.Where, ops.Not, ops.And, ops.Or)


def _downstream(op: Operation, limit: int = 64) -> list[Operation]:
    """Ops reached from ``op``'s results (breadth first, at most ``limit``)."""
    seen: list[Operation] = []
    frontier = [u for r in op.results for u in r.users]
    while frontier and len(seen) < limit:
        user = frontier.pop(0)
        if user in seen:
            continue
        seen.append(user)
        frontier.extend(u for r in user.results for u in r.users)
    return seen


def unrecognised_kwta(module: Module) -> list[tuple[ops.TopK, str]]:
    """Every TopK that feeds a mask (a comparison or scatter reached from its results) after recognition,
    with why the nearest selection after it is not a k-WTA."""
    found = []
    for top in module.walk(ops.TopK):
        reached = _downstream(top)
        if not any(isinstance(o, _MASK_OPS) for o in reached):
            continue
        reasons: list[str] = []
        for user in reached:
            if not isinstance(user, ops.Where | ops.Mul):
                continue
            try:
                match = match_kwta(user)
            except NoMatch as exc:
                if exc.topk is top:
                    reasons.insert(0, exc.reason)
                else:
                    reasons.append(exc.reason)
                continue
            if match is not None and match.topk is not top:
                continue
        reason = reasons[0] if reasons else "its mask selects no tensor (no where(mask, 0, x) or x * mask)"
        found.append((top, reason))
    return found


def warn_unrecognised(module: Module, onnx_nodes: Mapping[Operation, tuple[str, str]] | None = None) -> None:
    """One :class:`KWTANotRecognisedWarning` per TopK that feeds a mask but was not recognised, naming the
    ONNX node (and op type: an ArgMax is imported as a TopK) it came from when ``onnx_nodes`` knows it, else
    the TopK's result."""
    for top, reason in unrecognised_kwta(module):
        node, op_type = (onnx_nodes or {}).get(top, (top.results[0].name or "?", "TopK"))
        warnings.warn(KWTANotRecognisedWarning(reason, node=node, op_type=op_type), stacklevel=3)


@dataclasses.dataclass(frozen=True)
class RecognizeKWTAPass(Pass):
    """Replace exported k-WTA subgraphs by one sparse.kwta op; warn about TopK masks it cannot recognise."""

    name = "recognize-kwta"
    warn: bool = True  # the importer warns itself, naming ONNX nodes

    def apply(self, module: Module) -> None:
        apply_patterns(module, (*CLEANUP_PATTERNS, RecognizeKWTA()))
        if self.warn:
            warn_unrecognised(module)
