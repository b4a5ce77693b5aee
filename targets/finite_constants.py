"""Every target's check that a layer's constants are finite (README, 'IEEE special values').

The sparse kernels skip zero activations, so the ``0 * inf`` of an infinite weight (or boost factor) meeting a
zero input would be lost; the targets compile finite constants only.
"""

from __future__ import annotations

import numpy as np

from ..compiler.errors import CompileError
from ..compiler.ir import ops
from ..compiler.ir.core import Module


def refuse_non_finite_constants(op: ops.FusedLayer | ops.KWinners, target: str) -> None:
    """Weights, biases and boost factors holding inf or NaN are a CompileError naming the layer."""
    operands = {"boost": op.boost} if isinstance(op, ops.KWinners) else \
        {"weight": op.weight, "bias": op.bias, "boost": op.boost}
    for name, value in operands.items():
        if value is not None and isinstance(value.owner, ops.Constant) and not np.all(
                np.isfinite(np.asarray(value.owner.value))):
            raise CompileError(f"the {name} of %{op.result.name} holds inf or NaN; the {target} target compiles "
                               "finite constants only", op_type=op.name)


def refuse_non_finite_layers(module: Module, target: str) -> None:
    """:func:`refuse_non_finite_constants` for every conv, linear and k-WTA layer of ``module``."""
    for op in module.walk((ops.SparseConv2D, ops.SparseLinear, ops.KWinners)):
        refuse_non_finite_constants(op, target)
