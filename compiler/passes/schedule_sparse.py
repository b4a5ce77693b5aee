"""The ``schedule-sparse`` pass: choose, per layer, which sparsity the generated kernel exploits.

Expects: weights with a storage format (run ``compress-weights`` first; an undecided weight counts as
dense). Every ``nn.conv2d``/``nn.linear`` becomes ``sparse.conv2d``/``sparse.linear`` (empty epilogue) and
every fused layer with ``kernel="auto"`` gets a kernel:

===========================  ===========================  ==================
weights                      input (k-WTA bound density)  kernel
===========================  ===========================  ==================
dense                        none, or > act-sparse-below  ``dense``
dense                        <= act-sparse-below          ``act_sparse``
compressed (csr/csc/ell/bsr) none, or > act-sparse-below  ``weight_sparse``
compressed                   <= act-sparse-below          ``sparse_sparse``
===========================  ===========================  ==================

Guarantees: the same function; each layer's kernel fits its weight format and input (the verifier checks).
A kernel set explicitly (not ``auto``) is kept.
"""

from __future__ import annotations

import dataclasses

from ..cost_model import activation_density
from ..ir import ops
from ..ir.core import Module
from ..ir.ops.sparse import STORED_FORMATS
from .base import Pass
from .rewrite import Rewriter

_FUSED = {ops.Conv2D: ops.SparseConv2D, ops.Linear: ops.SparseLinear}


@dataclasses.dataclass
class ScheduleSparse(Pass):
    """Choose a dense, weight-sparse, activation-sparse or sparse-sparse kernel per layer."""

    name = "schedule-sparse"
    act_sparse_below: float = 0.6

    def apply(self, module: Module) -> None:
        rewriter = Rewriter(module.func)
        for op in module.walk((ops.Conv2D, ops.Linear)):
            fused = rewriter.create(op, _FUSED[type(op)], op.operand("input"), op.operand("weight"),
                                    bias=op.operand("bias"), **dict(op.attrs))
            rewriter.replace_op(op, fused)
        for op in module.walk((ops.SparseConv2D, ops.SparseLinear)):
            if op.attr("kernel") != "auto":
                continue
            compressed = isinstance(op.operand("weight").type.encoding, STORED_FORMATS)  # type: ignore[union-attr]
            x = op.operand("input")
            assert x is not None
            sparse_input = activation_density(x) <= self.act_sparse_below
            kernel = {(False, False): "dense", (False, True): "act_sparse",
                      (True, False): "weight_sparse", (True, True): "sparse_sparse"}[(compressed, sparse_input)]
            rewriter.set_attrs(op, kernel=kernel)
