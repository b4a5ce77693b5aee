"""The ``canonicalize`` pass and its patterns.

Expects: any valid module. Guarantees: the same function of the inputs (interpreter results unchanged up
to float rounding of folded weights), with

* ops whose operands are all constants folded into constants (this folds k-WTA boost-factor arithmetic
  such as ``exp(-b * duty)``), by running the interpreter on them;
* ``tensor.identity``, ``nn.dropout`` and no-op casts/reshapes removed, reshape chains collapsed;
* ``nn.batch_norm`` turned into ``nn.channel_affine`` and folded into a preceding ``nn.conv2d`` /
  ``nn.linear`` (the conv's result must have no other use);
* dead ops removed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..interpreter import evaluate_op
from ..ir import ops
from ..ir.core import Module, Operation, Value
from ..ir.weights import measure_weight_sparsity
from .base import Pass
from .rewrite import RewritePattern, Rewriter, apply_patterns

#: Folding an op whose result would exceed this many elements is skipped (it would bloat the module).
FOLD_LIMIT = 1 << 22


def constant_value(value: Value) -> np.ndarray | None:
    """The data of ``value`` if it is produced by a constant, else None."""
    owner = value.owner
    return owner.value if isinstance(owner, ops.Constant) else None


def make_constant(rewriter: Rewriter, anchor: Operation, array: np.ndarray, name: str | None) -> Value:
    """Insert a constant before ``anchor``, recording weight sparsity facts for weight-shaped data."""
    op = ops.Constant.of(np.asarray(array, order="C"), name=name)
    return rewriter.insert_before(anchor, op).result


class FoldConstants(RewritePattern[Operation]):
    """An op whose operands are all constants becomes a constant (evaluated by the interpreter)."""

    def match_and_rewrite(self, op: Operation, rewriter: Rewriter) -> bool:
        if isinstance(op, ops.Constant) or not op.operand_values:
            return False
        if any(constant_value(v) is None for v in op.operand_values):
            return False
        if any(not r.type.is_static or (r.type.numel() or 0) > FOLD_LIMIT for r in op.results):
            return False
        slots: list[np.ndarray | list[np.ndarray | None] | None] = []
        for slot in op.operand_slots():
            if slot is None:
                slots.append(None)
            elif isinstance(slot, tuple):
                slots.append([constant_value(v) for v in slot])
            else:
                slots.append(constant_value(slot))
        arrays = evaluate_op(op, slots)
        new = [make_constant(rewriter, op, a, r.name) for a, r in zip(arrays, op.results, strict=True)]
        rewriter.replace_op(op, new)
        return True


_NoOp = ops.Identity | ops.Dropout | ops.Cast | ops.Reshape


class DropIdentity(RewritePattern[_NoOp]):
    """``tensor.identity``, ``nn.dropout``, a cast to the same dtype and a reshape to the same shape are no-ops."""

    op_type = (ops.Identity, ops.Dropout, ops.Cast, ops.Reshape)

    def match_and_rewrite(self, op: _NoOp, rewriter: Rewriter) -> bool:
        x = op.input
        if isinstance(op, ops.Cast) and x.type.dtype != op.to:
            return False
        if isinstance(op, ops.Reshape) and (x.type.shape != op.result.type.shape or None in x.type.shape[1:]):
            return False
        rewriter.replace_all_uses(op.result, x)
        rewriter.erase_op(op)
        return True


class CollapseReshapes(RewritePattern[ops.Reshape]):
    """``reshape(reshape(x, s1), s2)`` is ``reshape(x, s2)``."""

    op_type = ops.Reshape

    def match_and_rewrite(self, op: ops.Reshape, rewriter: Rewriter) -> bool:
        inner = op.input.owner
        if not isinstance(inner, ops.Reshape):
            return False
        rewriter.set_operand(op, "input", inner.input)
        return True


class BatchNormToAffine(RewritePattern[ops.BatchNorm]):
    """``nn.batch_norm`` with constant statistics becomes ``nn.channel_affine(x, s, t)`` with
    ``s = scale / sqrt(var + eps)`` and ``t = bias - mean * s`` (computed in float64, stored in the input's dtype)."""

    op_type = ops.BatchNorm

    def match_and_rewrite(self, op: ops.BatchNorm, rewriter: Rewriter) -> bool:
        params = [constant_value(v) for v in (op.scale, op.bias, op.mean, op.var)]
        known = [p.astype(np.float64) for p in params if p is not None]
        if len(known) != len(params):
            return False
        scale, bias, mean, var = known
        s = scale / np.sqrt(var + op.epsilon)
        t = bias - mean * s
        dtype = op.result.type.numpy_dtype
        sv = make_constant(rewriter, op, s.astype(dtype), f"{op.result.name}_scale")
        tv = make_constant(rewriter, op, t.astype(dtype), f"{op.result.name}_shift")
        rewriter.replace_op(op, rewriter.create(op, ops.ChannelAffine, op.input, sv, tv))
        return True


class FoldAffineIntoLayer(RewritePattern[ops.ChannelAffine]):
    """``channel_affine(conv2d|linear(x, w, b), s, t)`` becomes the layer with ``w * s`` and ``b * s + t``,
    when the layer's result has no other use and weights are constant. Weight zeros stay zeros, so the
    recorded sparsity facts are recomputed and stay true."""

    op_type = ops.ChannelAffine

    def match_and_rewrite(self, op: ops.ChannelAffine, rewriter: Rewriter) -> bool:
        layer = op.input.owner
        if not isinstance(layer, ops.Conv2D | ops.Linear) or not layer.result.has_one_use():
            return False
        w = constant_value(layer.weight)
        bias_value = layer.bias
        b = constant_value(bias_value) if bias_value is not None else np.zeros(w.shape[0] if w is not None else 0)
        s, t = constant_value(op.scale), constant_value(op.shift)
        if w is None or b is None or s is None or t is None:
            return False
        dtype = w.dtype
        s64 = s.astype(np.float64)
        w_new = (w.astype(np.float64) * s64.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dtype)
        b_new = (b.astype(np.float64) * s64 + t.astype(np.float64)).astype(dtype)
        old_w = layer.weight
        w_value = make_constant(rewriter, op, w_new, old_w.name)
        _copy_weight_facts(old_w, w_value)
        b_value = make_constant(rewriter, op, b_new, bias_value.name if bias_value is not None else None)
        attrs = dict(layer.attrs)
        new_layer = rewriter.create(op, type(layer), layer.input, w_value, bias=b_value, **attrs)
        rewriter.replace_op(op, new_layer)
        return True


def _copy_weight_facts(old: Value, new: Value) -> None:
    """Give ``new`` the same kind of sparsity fact ``old`` had, re-measured on the new data."""
    from ..ir.types import SparseWeights

    if isinstance(old.type.encoding, SparseWeights) and isinstance(new.owner, ops.Constant):
        m = measure_weight_sparsity(new.owner.value)
        new.set_type(new.type.with_encoding(SparseWeights(m.density, m.fan_in)))


CLEANUP_PATTERNS: tuple[RewritePattern[Any], ...] = (FoldConstants(), DropIdentity(), CollapseReshapes())
CANONICALIZE_PATTERNS: tuple[RewritePattern[Any], ...] = (*CLEANUP_PATTERNS, BatchNormToAffine(), FoldAffineIntoLayer())


@dataclasses.dataclass(frozen=True)
class Canonicalize(Pass):
    """Fold constants and batch norms into layers, drop no-ops and dead code."""

    name = "canonicalize"
    fold_batch_norm: bool = True

    def apply(self, module: Module) -> None:
        apply_patterns(module, CANONICALIZE_PATTERNS if self.fold_batch_norm else CLEANUP_PATTERNS)
