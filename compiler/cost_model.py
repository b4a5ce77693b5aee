"""Per-layer cost model: dense and sparse-sparse multiply-accumulates, densities and k.

For one sample, a layer's *dense MACs* are what a dense implementation performs; its *sparse-sparse MACs*
estimate what remains when only non-zero weights meet non-zero inputs: ``dense x weight density x input
activation density``, where the input density is the bound its type carries (``#kwta<k, over>``: at most
``k / group size``; 1 without a bound). Border effects of convolutions are ignored (it is an estimate).
The passes ``compress-weights`` and ``schedule-sparse`` decide from these numbers.
"""

from __future__ import annotations

import dataclasses
import math

from .errors import VerificationError
from .ir import ops
from .ir.core import Module, Operation, Value
from .ir.ops.nn import conv2d_output_shape
from .ir.ops.sparse import KWTAStage
from .ir.types import KWTABound, WeightEncoding
from .ir.weights import measure_weight_sparsity
from .kernel_profile import BUILTIN, KernelProfile, profile_for

LAYER_OPS = (ops.Conv2D, ops.Linear, ops.SparseConv2D, ops.SparseLinear, ops.MatMul)
REPORTED_OPS = (*LAYER_OPS, ops.KWinners, ops.MaxPool2D, ops.AvgPool2D, ops.GlobalAvgPool2D)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    shape: tuple[int | None, ...]
    weight_density: float | None
    input_density: float
    k: int | None
    output_density: float | None
    dense_macs: int
    sparse_macs: float


def activation_density(value: Value) -> float:
    """Upper bound on the fraction of non-zeros of ``value`` (1.0 without a k-WTA bound)."""
    enc = value.type.encoding
    if isinstance(enc, KWTABound):
        density = enc.density(value.type.shape)
        if density is not None:
            return density
    return 1.0


def weight_density(value: Value) -> float:
    enc = value.type.encoding
    if isinstance(enc, WeightEncoding):
        return enc.density
    if isinstance(value.owner, ops.Constant):
        return measure_weight_sparsity(value.owner.value).density
    return 1.0


def dense_macs(op: Operation) -> int:
    """MACs of one sample of a conv/linear/matmul op."""
    if isinstance(op, ops.ConvLike):
        w = op.weight.type.static_shape
        _, o, oh, ow = conv2d_output_shape(op)
        return (o or 0) * (oh or 0) * (ow or 0) * math.prod(w[1:])
    if isinstance(op, ops.WeightedLayer):
        o, i = op.weight.type.static_shape
        return o * i
    if isinstance(op, ops.MatMul):
        a, b = op.lhs.type.shape, op.rhs.type.shape
        rows = math.prod(d for d in a[1:-1] if d is not None) if len(a) > 2 else 1
        return int(rows * (a[-1] or 0) * (b[-1] or 0))
    return 0


def layer_k(op: Operation) -> int | None:
    if isinstance(op, ops.KWinners):
        return op.k
    if isinstance(op, ops.FusedLayer):
        for stage in op.epilogue:
            if isinstance(stage, KWTAStage):
                return stage.k
    return None


def layer_costs(module: Module) -> list[LayerCost]:
    costs = []
    for op in module.walk(REPORTED_OPS):
        x = op.operand_values[0]
        k = layer_k(op)
        out = op.results[0]
        out_density = activation_density(out) if isinstance(out.type.encoding, KWTABound) else None
        macs = dense_macs(op)
        wd = weight_density(op.weight) if isinstance(op, ops.WeightedLayer) else None
        ad = activation_density(x)
        sparse = macs * (wd if wd is not None else 1.0) * ad
        costs.append(LayerCost(out.name or "", op.name, out.type.shape, wd, ad, k, out_density, macs, sparse))
    return costs


def mac_reduction(costs: list[LayerCost]) -> float:
    dense = sum(c.dense_macs for c in costs)
    sparse = sum(c.sparse_macs for c in costs)
    return dense / sparse if sparse else 1.0


def format_stats(module: Module) -> str:
    """The per-layer table printed by ``sparsecc stats``; a TopK selection that was not recognised as k-WTA
    is listed where it sits, marked ``!`` (its layer runs dense)."""
    from .passes.recognize_kwta import unrecognised_kwta

    costs = iter(layer_costs(module))
    unrecognised = {id(op): reason for op, reason in unrecognised_kwta(module)}
    header = (f"{'layer':<28} {'op':<20} {'output':<18} {'w.density':>9} {'in.density':>10} {'k':>6} "
              f"{'out.density':>11} {'dense MACs':>12} {'sparse MACs':>12}")
    lines = [f"model {module.name}", header, "-" * len(header)]
    listed = []
    for op in module.walk((*REPORTED_OPS, ops.TopK)):
        if isinstance(op, ops.TopK):
            if id(op) in unrecognised:
                shape = "x".join("?" if d is None else str(d) for d in op.operand_values[0].type.shape[1:])
                lines.append(f"{'! ' + (op.results[0].name or '')[:26]:<28} {op.name:<20} {shape:<18} {'':>9} "
                             f"{'':>10} {op.k:>6}  k-WTA not recognised: runs dense")
            continue
        c = next(costs)
        listed.append(c)
        shape = "x".join("?" if d is None else str(d) for d in c.shape[1:])
        lines.append(
            f"{c.name[:28]:<28} {c.op:<20} {shape:<18} "
            f"{'' if c.weight_density is None else f'{c.weight_density:.3f}':>9} {c.input_density:>10.3f} "
            f"{'' if c.k is None else c.k:>6} {'' if c.output_density is None else f'{c.output_density:.3f}':>11} "
            f"{c.dense_macs:>12,} {round(c.sparse_macs):>12,}"
        )
    dense = sum(c.dense_macs for c in listed)
    sparse = sum(c.sparse_macs for c in listed)
    lines.append("-" * len(header))
    lines.append(f"total: {dense:,} dense MACs ({dense / 1e6:.1f}M), {round(sparse):,} sparse-sparse MACs "
                 f"({sparse / 1e6:.2f}M); MAC reduction {mac_reduction(listed):.1f}x")
    if unrecognised:
        lines.append(f"! {len(unrecognised)} TopK selection(s) not recognised as k-WTA: the layers after them run "
                     "dense (see the warnings)")
    return "\n".join(lines)


# -- kernel and storage choice per target ---------------------------------------------------------------------
TARGETS = ("generic", "llvm", "cuda", "hls")

#: Weight density above which a dense kernel beats indexing the non-zeros (default of every profile).
DENSE_ABOVE = BUILTIN["generic"].dense_above
#: Input density (k-WTA bound) at or below which the generic model exploits activation sparsity.
ACT_SPARSE_BELOW = BUILTIN["generic"].act_sparse_below


@dataclasses.dataclass(frozen=True)
class KernelPlan:
    """What a layer's generated code exploits (``kernel``) and how its weight is stored (``format``)."""

    kernel: str  # dense | weight_sparse | act_sparse | sparse_sparse
    format: str  # dense | csr | csc | ell


def plan_layer(layer: ops.WeightedLayer, target: str = "generic", *, profile: KernelProfile | None = None,
               dense_above: float | None = None, act_sparse_below: float | None = None) -> KernelPlan:
    """Choose kernel and weight format for a conv/linear layer from its measured densities and the target's
    kernel ``profile`` (default: the target's built-in profile; ``dense_above``/``act_sparse_below`` override
    the profile's values).

    ``generic`` (also ``hls`` and ``cuda``, whose kernels follow the MAC count): exploit weight sparsity when
    the density is at most ``dense_above`` and activation sparsity when the input's k-WTA bound is at most
    ``act_sparse_below``; both -> sparse-sparse with CSC columns, weights only -> ELL rows (fixed fan-in) or
    CSR. ``llvm``: the profile's measured crossovers (a conv's activation-sparse kernel reads dense weight
    columns; a linear layer scatters its active inputs over CSC columns when few are active).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")
    profile = profile or BUILTIN[profile_for(target)]
    dense_above = profile.dense_above if dense_above is None else dense_above
    act_sparse_below = profile.act_sparse_below if act_sparse_below is None else act_sparse_below
    weight = layer.weight
    if not isinstance(weight.owner, ops.Constant):
        raise VerificationError(f"{layer.name}: the weight must be a constant to plan its kernel")
    m = measure_weight_sparsity(weight.owner.value)
    act = activation_density(layer.input)
    row_format = "ell" if m.fan_in is not None else "csr"
    sparse_weights = m.density <= dense_above
    if target == "llvm":
        if isinstance(layer, ops.ConvLike):
            plain = layer.strides == (1, 1) and layer.dilations == (1, 1) and layer.groups == 1
            kernel = profile.llvm_conv_kernel(density=m.density, activity=act, plain=plain,
                                              reduction=math.prod(weight.type.static_shape[1:]))
            return KernelPlan(kernel, row_format if kernel == "weight_sparse" else "dense")
        if sparse_weights and act <= profile.linear_scatter_max:
            return KernelPlan("sparse_sparse", "csc")
        return KernelPlan("weight_sparse", row_format) if sparse_weights else KernelPlan("dense", "dense")
    sparse_input = act <= act_sparse_below
    if sparse_weights and sparse_input:
        return KernelPlan("sparse_sparse", "csc")
    if sparse_weights:
        return KernelPlan("weight_sparse", row_format)
    return KernelPlan("act_sparse" if sparse_input else "dense", "dense")
