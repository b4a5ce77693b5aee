"""The ``fuse-kwta`` pass: activations and the pooling after them become the epilogue of their layer.

Expects: canonicalized IR (batch norms folded into their conv/linear, so k-WTA directly follows its layer).
Rewrites ``nn.conv2d``/``nn.linear`` followed by a chain of single-use ``nn.relu``, ``sparse.kwta`` and
(for convolutions) ``nn.maxpool2d``, each at most once and in any order (networks pool before or after
their activation), into one ``sparse.conv2d``/``sparse.linear`` whose ``epilogue`` lists the stages in
order and whose ``boost`` operand is the k-WTA's. Guarantees: the same function;
the fused result carries the bound the chain guaranteed (``#kwta`` after k-WTA, kept through disjoint
max-pooling), so the consumer's input type says it is k-sparse. Kernel choice is left ``auto``.
"""

from __future__ import annotations

import dataclasses

from ..ir import ops
from ..ir.attributes import StructAttr
from ..ir.core import Module, Operation, Value
from ..ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from .base import Pass
from .rewrite import RewritePattern, Rewriter, apply_patterns

_FUSED = {ops.Conv2D: ops.SparseConv2D, ops.Linear: ops.SparseLinear}


def _next_stage(value: Value, layer: ops.Conv2D | ops.Linear, seen: set[type]
                ) -> tuple[Operation, StructAttr] | None:
    """The single consumer of ``value`` if it is an activation/pooling stage that may join the epilogue."""
    func = layer.function
    if not value.has_one_use() or (func is not None and func.is_output(value)):
        return None
    user = value.uses[0].op
    if user.operand_values[0] is not value:
        return None
    stage: StructAttr
    if isinstance(user, ops.Relu):
        stage = ReluStage()
    elif isinstance(user, ops.KWinners):
        stage = KWTAStage(user.k, user.over, user.ties)
    elif isinstance(user, ops.MaxPool2D) and isinstance(layer, ops.Conv2D):
        stage = MaxPoolStage(user.kernel, user.strides, user.pads, user.ceil_mode)
    else:
        return None
    return None if type(stage) in seen else (user, stage)


class FuseEpilogue(RewritePattern[ops.Conv2D | ops.Linear]):
    """conv/linear -> a chain of relu / kwta / maxpool becomes one fused op (see module docstring)."""

    op_type = (ops.Conv2D, ops.Linear)

    def match_and_rewrite(self, op: ops.Conv2D | ops.Linear, rewriter: Rewriter) -> bool:
        stages: list[StructAttr] = []
        chain: list[Operation] = []
        boost = None
        value = op.result
        while (found := _next_stage(value, op, {type(s) for s in stages})) is not None:
            user, stage = found
            stages.append(stage)
            chain.append(user)
            if isinstance(user, ops.KWinners):
                boost = user.boost
            value = user.result
        if not stages:
            return False
        last = chain[-1]
        fused = rewriter.create(last, _FUSED[type(op)], op.input, op.weight, bias=op.bias, boost=boost,
                                epilogue=tuple(stages), **dict(op.attrs))
        rewriter.replace_op(last, fused)
        return True


@dataclasses.dataclass(frozen=True)
class FuseKWTA(Pass):
    """Fuse k-WTA, ReLU and the max-pool after them into the epilogue of their layer."""

    name = "fuse-kwta"

    def apply(self, module: Module) -> None:
        apply_patterns(module, (FuseEpilogue(),))
