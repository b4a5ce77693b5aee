"""k-WTA and the fused sparse layers (``sparse.*``).

``sparse.kwta`` is the one op a k-WTA subgraph becomes. ``sparse.conv2d`` / ``sparse.linear`` are a
convolution / linear layer with a fused **epilogue** (a sequence of stages applied to the layer's output:
``#epi.relu``, ``#epi.kwta<...>``, ``#epi.maxpool<...>``, each at most once, in any order: networks pool
before or after their activation) and a **kernel** choice saying which of the two
sparsities the generated code exploits:

========================  ==============================================================
``dense``                 dense weights x dense input
``weight_sparse``         only the non-zero weights (compressed) x dense input
``act_sparse``            dense weights, only the non-zero inputs (k-WTA-bounded input)
``sparse_sparse``         non-zero weights x non-zero inputs
``auto``                  not decided yet (``schedule-sparse`` decides)
========================  ==============================================================
"""

from __future__ import annotations

from ...errors import VerificationError
from ..attributes import StructAttr, check, struct_attr
from ..core import Operation, attr_def, operand_def, opt_operand_def, register_op
from ..shapes import window_output_dim
from ..types import BSR, CSC, CSR, ELL, KWTABound, TensorType
from .nn import ConvLike, WeightedLayer, conv2d_output_shape, linear_output_shape, pooled_bound

TIES = ("keep", "break")
KERNELS = ("auto", "dense", "weight_sparse", "act_sparse", "sparse_sparse")


def check_kwta(where: str, shape: tuple[int | None, ...], k: int, over: tuple[int, ...]) -> KWTABound:
    """Validate k-WTA parameters for a tensor of ``shape`` and return the bound it guarantees."""
    check(len(shape) >= 2, f"{where}: k-WTA needs a batch axis and at least one selection axis")
    check(0 not in over, f"{where}: k-WTA cannot select over the batch axis 0")
    bound = KWTABound(k, tuple(over))
    bound.check_shape(shape)
    return bound


def check_boost(where: str, boost: TensorType | None, shape: tuple[int | None, ...]) -> None:
    """Boost factors have the input's rank, 1 on the batch axis and 1 or the input's size elsewhere."""
    if boost is None:
        return
    check(boost.rank == len(shape), f"{where}: boost must have rank {len(shape)}, got {boost.rank}")
    check(boost.shape[0] == 1, f"{where}: boost must not vary along the batch axis")
    for b, d in zip(boost.shape[1:], shape[1:], strict=True):
        check(b == 1 or b == d, f"{where}: boost shape {list(boost.shape)} does not broadcast to {list(shape)}")


@register_op
class KWinners(Operation):
    """k-winners-take-all over the axes ``over`` of each sample (DESIGN.md §2).

    ``boosted = input * boost`` (no boost: ``boosted = input``); ``threshold`` = the k-th largest boosted
    value of each selection group; ``out = where(boosted < threshold, 0, input)``. ``ties="keep"``: every
    unit tied with the threshold survives (more than k may be non-zero); ``ties="break"``: exactly k survive,
    among equal boosted values the lower flat index (within the group, row-major) wins. Winners keep their
    original (possibly negative) values. The result carries ``#kwta<k, over>``.
    """

    name = "sparse.kwta"
    input = operand_def()
    boost = opt_operand_def()
    k = attr_def(int)
    over = attr_def("ints")
    ties = attr_def(str, "keep", choices=TIES)

    def infer_types(self) -> list[TensorType]:
        x = self.input.type
        bound = check_kwta(self.name, x.shape, self.k, self.over)
        check_boost(self.name, self.boost.type if self.boost else None, x.shape)
        return [TensorType(x.shape, x.dtype, bound)]


@struct_attr("epi.relu")
class ReluStage(StructAttr):
    """Epilogue stage: ``max(x, 0)``."""


@struct_attr("epi.kwta")
class KWTAStage(StructAttr):
    """Epilogue stage: k-WTA as ``sparse.kwta`` (boost factors come from the fused op's ``boost`` operand)."""

    k: int
    over: tuple[int, ...]
    ties: str = "keep"

    def __post_init__(self) -> None:
        check(self.ties in TIES, f"#epi.kwta: ties must be one of {list(TIES)}")


@struct_attr("epi.maxpool")
class MaxPoolStage(StructAttr):
    """Epilogue stage: max pooling as ``nn.maxpool2d``."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...] = (0, 0, 0, 0)
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        check(len(self.kernel) == 2 and min(self.kernel) >= 1, "#epi.maxpool: kernel must be two positive ints")
        check(len(self.strides) == 2 and min(self.strides) >= 1, "#epi.maxpool: strides must be two positive ints")
        check(len(self.pads) == 4 and min(self.pads) >= 0, "#epi.maxpool: pads must be four non-negative ints")


class FusedLayer(WeightedLayer):
    """The operands and attributes shared by the fused layers ``sparse.conv2d`` and ``sparse.linear``
    (not an op itself): boost factors for the k-WTA stage, the epilogue stages and the kernel choice."""

    boost = opt_operand_def()
    epilogue = attr_def("structs", ())
    kernel = attr_def(str, "auto", choices=KERNELS)


def epilogue_type(op: FusedLayer, shape: tuple[int | None, ...], dtype: str) -> TensorType:
    """The type after applying ``op``'s epilogue stages to a result of ``shape``; checks the stages."""
    stages = op.epilogue
    kinds = [type(s) for s in stages]
    check(all(k in (ReluStage, KWTAStage, MaxPoolStage) for k in kinds), f"{op.name}: unknown epilogue stage")
    check(len(set(kinds)) == len(kinds), f"{op.name}: each epilogue stage may appear once")
    boost = op.boost
    check(boost is None or KWTAStage in kinds, f"{op.name}: a boost operand needs an #epi.kwta stage")
    bound: KWTABound | None = None
    for stage in stages:
        if isinstance(stage, KWTAStage):
            bound = check_kwta(op.name, shape, stage.k, stage.over)
            check_boost(op.name, boost.type if boost else None, shape)
        elif isinstance(stage, MaxPoolStage):
            check(len(shape) == 4, f"{op.name}: max-pool needs an NCHW result")
            n, c, h, w = shape
            kh, kw = stage.kernel
            sh, sw = stage.strides
            pt, pl, pb, pr = stage.pads
            shape = (n, c, window_output_dim(h, kh, sh, pt, pb, 1, stage.ceil_mode),
                     window_output_dim(w, kw, sw, pl, pr, 1, stage.ceil_mode))
            bound = pooled_bound(bound, shape, stage.kernel, stage.strides, stage.pads)
    return TensorType(shape, dtype, bound)


#: Which weight encodings each kernel reads: compressed formats for the weight-sparse kernels, a dense
#: tensor (possibly with measured #sparse facts) for the others.
STORED_FORMATS = (CSR, CSC, ELL, BSR)


def check_kernel(op: FusedLayer) -> None:
    """The kernel choice must fit the weight's storage format and the input's sparsity bound."""
    kernel = op.kernel
    if kernel == "auto":
        return
    weight_enc = op.weight.type.encoding
    compressed = isinstance(weight_enc, STORED_FORMATS)
    if kernel in ("weight_sparse", "sparse_sparse") and not compressed:
        raise VerificationError(f"{op.name}: kernel '{kernel}' needs compressed weights (#csr, #csc, #ell, #bsr)")
    if kernel in ("dense", "act_sparse") and isinstance(weight_enc, STORED_FORMATS):
        raise VerificationError(f"{op.name}: kernel '{kernel}' reads dense weights, got #{weight_enc.mnemonic}")
    bounded = isinstance(op.input.type.encoding, KWTABound)
    if kernel in ("act_sparse", "sparse_sparse") and not bounded:
        raise VerificationError(f"{op.name}: kernel '{kernel}' needs an input with a #kwta bound")


@register_op
class SparseConv2D(FusedLayer, ConvLike):
    """``nn.conv2d`` with a fused epilogue and a kernel choice (see module docstring)."""

    name = "sparse.conv2d"

    def infer_types(self) -> list[TensorType]:
        return [epilogue_type(self, conv2d_output_shape(self), self.input.type.dtype)]

    def verify(self) -> None:
        check_kernel(self)


@register_op
class SparseLinear(FusedLayer):
    """``nn.linear`` with a fused epilogue (ReLU, k-WTA) and a kernel choice (see module docstring)."""

    name = "sparse.linear"

    def infer_types(self) -> list[TensorType]:
        return [epilogue_type(self, linear_output_shape(self), self.input.type.dtype)]

    def verify(self) -> None:
        check_kernel(self)
