"""The ``schedule-sparse`` pass: choose, per layer, which sparsity the generated kernel exploits.

Expects: weights with a storage format (run ``compress-weights`` first, with the same ``target``; an
undecided weight counts as dense). Every ``nn.conv2d``/``nn.linear`` becomes ``sparse.conv2d``/
``sparse.linear`` (empty epilogue) and every fused layer with ``kernel="auto"`` gets the kernel that the cost
model (:func:`sparsecc.compiler.cost_model.plan_layer`) chooses for ``target``, made consistent with the
weight's format (a compressed weight gets a weight-sparse kernel, a dense one a dense-weight kernel):

===========================  ===========================  ==================
weights                      input                        kernel
===========================  ===========================  ==================
dense                        dense, or sparsity not used  ``dense``
dense                        k-sparse, exploited          ``act_sparse``
compressed (csr/csc/ell/bsr) dense, or sparsity not used  ``weight_sparse``
compressed                   k-sparse, exploited          ``sparse_sparse``
===========================  ===========================  ==================

Whether input sparsity is exploited is the cost model's call for the target: generically when the k-WTA
bound is at most ``act-sparse-below``; on ``llvm`` only where it was measured to pay (see the cost model).
Guarantees: the same function; each kernel fits its weight format and input (the verifier checks). A kernel
set explicitly (not ``auto``) is kept.
"""

from __future__ import annotations

import dataclasses

from ..cost_model import TARGETS, plan_layer
from ..errors import PassError
from ..ir import ops
from ..ir.core import Module
from ..ir.ops.sparse import STORED_FORMATS
from ..kernel_profile import KernelProfile, load_profile, profile_for
from .base import Pass
from .rewrite import Rewriter

_FUSED = {ops.Conv2D: ops.SparseConv2D, ops.Linear: ops.SparseLinear}


@dataclasses.dataclass(frozen=True)
class ScheduleSparse(Pass):
    """Choose a dense, weight-sparse, activation-sparse or sparse-sparse kernel per layer."""

    name = "schedule-sparse"
    target: str = "generic"
    profile: str = ""
    act_sparse_below: float | None = None
    _profile: KernelProfile = dataclasses.field(init=False, repr=False, compare=False)  # from the options

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise PassError(f"schedule-sparse: target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        object.__setattr__(self, "_profile", load_profile(self.profile or profile_for(self.target)))

    def apply(self, module: Module) -> None:
        rewriter = Rewriter(module.func)
        for op in module.walk((ops.Conv2D, ops.Linear)):
            fused = rewriter.create(op, _FUSED[type(op)], op.input, op.weight, bias=op.bias, **dict(op.attrs))
            rewriter.replace_op(op, fused)
        for op in module.walk((ops.SparseConv2D, ops.SparseLinear)):
            if op.kernel != "auto":
                continue
            compressed = isinstance(op.weight.type.encoding, STORED_FORMATS)
            if isinstance(op.weight.owner, ops.Constant):
                planned = plan_layer(op, self.target, profile=self._profile,
                                     act_sparse_below=self.act_sparse_below).kernel
                sparse_input = planned in ("act_sparse", "sparse_sparse")
            else:
                sparse_input = False
            kernel = {(False, False): "dense", (False, True): "act_sparse",
                      (True, False): "weight_sparse", (True, True): "sparse_sparse"}[(compressed, sparse_input)]
            rewriter.set_attrs(op, kernel=kernel)
