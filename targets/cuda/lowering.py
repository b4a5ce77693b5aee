"""Which GPU kernel each sparse op becomes (the cuda target's :class:`KernelSet`).

``sparse.conv2d`` / ``sparse.linear`` by kernel kind:

==================  ===============================================================================
``dense``           TVM's generic conv2d / matmul, scheduled by DLight
``weight_sparse``   :func:`~.kernels.conv2d_gather` / :func:`~.kernels.linear_gather`
``sparse_sparse``   :func:`~.kernels.conv2d_scatter` / :func:`~.kernels.linear_scatter` (compressed weights)
``act_sparse``      the same scatter kernels over the dense weight's non-zeros
==================  ===============================================================================

(a scatter kernel that does not apply — grouped conv, or outputs too large for shared memory — falls back to
the gather kernel). The epilogue ``[pre stages] [kwta] [post stages]`` is split at its k-WTA stage: ReLU and
max-pool before it are fused into the layer kernel (generic ops for ``dense``), the k-WTA is
:func:`~.kernels.kwta_global` (selection over all non-batch axes) or :func:`~.kernels.kwta_local` (over the
channels at each pixel), which also fuses a following ReLU and max-pool when ties are kept. ``sparse.kwta``
uses the same k-WTA kernels. Anything else (e.g. k-WTA over other axes, non-constant weights or boost) uses the
generic lowering.

Unless ``fast_math``, every layer that calls one of these kernels runs behind the IEEE guard of :mod:`.ieee`
(an exact generic path when its input holds an inf or a NaN). :class:`CUDALowering` carries the kernels'
:class:`~.kernels.Flavour`: GPU, or the CPU emulation with which the tests run a whole model's lowering on a
machine without a GPU.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tvm import relax

from ...compiler.ir import ops
from ...compiler.ir.core import Value
from ...compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from ...compiler.ir.ops.nn import conv2d_output_shape, linear_output_shape
from ...compiler.ir.ops.sparse import MaxPoolStage, ReluStage
from ...compiler.ir.types import TensorType
from ..kernel import Kernel
from ..relax_lowering import KernelSet, RelaxLowering, conv2d_expr, kwta_expr, linear_expr, pool_expr, relu_expr
from . import kernels as K
from .ieee import FastPath, guarded

KERNELS = KernelSet()


class CUDALowering(RelaxLowering):
    """The cuda target's lowering: :data:`KERNELS` emitted with ``flavour`` (GPU by default; ``K.CPU`` runs the
    same kernels as serial loops, for tests on the CPU)."""

    def __init__(self, module: Any, progress: Any = None, fast_math: bool = False, flavour: K.Flavour = K.GPU
                 ) -> None:
        super().__init__(module, KERNELS, progress, fast_math=fast_math)
        self.flavour = flavour


def _flavour(lo: RelaxLowering) -> K.Flavour:
    return getattr(lo, "flavour", K.GPU)

#: Name prefixes of sparsecc's own GPU kernels (the device functions are ``<prefix>_<layer>_kernel``).
KERNEL_FAMILIES = ("kwta_global", "kwta_local", "conv2d_weight_sparse", "conv2d_sparse_sparse", "conv2d_act_sparse",
                   "linear_weight_sparse", "linear_sparse_sparse", "linear_act_sparse")
_KERNEL_RE = re.compile(r"__global__ void (?:__launch_bounds__\(\d+\) )?((?:" + "|".join(KERNEL_FAMILIES)
                        + r")\w*_kernel)\(")


def kernel_names(source: str) -> list[str]:
    """The sparsecc GPU kernels defined in generated CUDA source, sorted."""
    return sorted(set(_KERNEL_RE.findall(source)))


def _constant(value: Value | None) -> np.ndarray | None:
    if value is None:
        return None
    owner = value.owner
    return np.asarray(owner.value) if isinstance(owner, ops.Constant) else None


def _is_f32(*values: Value | None) -> bool:
    return all(v is None or v.type.dtype == "f32" for v in values)


def _call(lo: RelaxLowering, kernel: Kernel, x: relax.Expr, batch_dim: int | None) -> relax.Expr:
    args = [x, *(lo.const(c) for c in kernel.constants)]
    assert kernel.out_shape is not None
    return lo.call_tir(kernel.prim_func, kernel.name, args, [TensorType((batch_dim, *kernel.out_shape))])[0]


def _generic_stages(lo: RelaxLowering, y: relax.Expr, stages: Sequence[Any]) -> relax.Expr:
    for stage in stages:
        y = lo.emit(y)
        if isinstance(stage, ReluStage):
            y = relu_expr(y)  # keeps NaN (relax's relu does not)
        elif isinstance(stage, MaxPoolStage):
            y = pool_expr(y, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, "max")
    return lo.emit(y)


def _pool_shape(shape: tuple[int | None, ...], pool: MaxPoolStage) -> tuple[int | None, ...]:
    oh, ow = K.pooled_dims(shape[2], shape[3], pool)  # type: ignore[arg-type]
    return (shape[0], shape[1], oh, ow)


def apply_kwta(lo: RelaxLowering, y: relax.Expr, shape: tuple[int | None, ...], kwta: Kwta, boost: Value | None,
               post: Epilogue, name: str) -> relax.Expr:
    """k-WTA (then the ``post`` stages) on ``y`` of ``shape`` with the GPU kernels where they apply; ``boost``: the
    op's boost operand (a computed one keeps the generic lowering)."""
    rank = len(shape)
    over, ties = kwta.over, kwta.ties
    if boost is not None and kwta.boost is None:
        out = lo.emit(kwta_expr(lo, y, TensorType(shape), boost, kwta.k, over, ties))
        return _generic_stages(lo, out, post.stages)
    group = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
    if kwta.is_global:
        relu = post.relu and ties == "keep"
        pool = post.pool if ties == "keep" and rank == 4 else None
        fused = [s for s in post.stages if (relu and isinstance(s, ReluStage)) or s is pool]
        kernel = K.kwta_global(group, kwta, Epilogue(rank, tuple(fused)), name, flavour=_flavour(lo))
        rest = [s for s in post.stages if s not in fused]
    elif over == (1,) and rank >= 3:
        fused = [s for s in post.stages if isinstance(s, ReluStage)]
        kernel = K.kwta_local(group, kwta, Epilogue(rank, tuple(fused)), name, flavour=_flavour(lo))
        rest = [s for s in post.stages if s not in fused]
    else:
        out = lo.emit(kwta_expr(lo, y, TensorType(shape), boost, kwta.k, over, ties))
        return _generic_stages(lo, out, post.stages)
    out = _call(lo, kernel, y, shape[0])
    return _generic_stages(lo, out, rest) if rest else out


def _uses_kernels(op: ops.FusedLayer) -> bool:
    """Whether the fast path of a conv / linear layer calls a sparsecc GPU kernel (dense layers without a k-WTA
    are generic ops, exact on inf/NaN: no guard)."""
    return op.kernel not in ("dense", "auto") or Epilogue.of_op(op).kwta is not None


def _constant_boost(op: ops.FusedLayer | ops.KWinners) -> bool:
    return op.boost is None or _constant(op.boost) is not None


def _lower_layer(op: ops.SparseConv2D | ops.SparseLinear, lo: RelaxLowering,
                 fast: FastPath) -> list[relax.Expr] | None:
    """Lower a conv/linear layer with constant float32 weights through ``fast``, behind the IEEE guard when it
    calls a sparsecc GPU kernel; None (the generic lowering) for any other layer."""
    x, w, b = op.input, op.weight, op.bias
    weight, bias = _constant(w), _constant(b)
    if weight is None or (b is not None and bias is None) or not _is_f32(x, w, b) or not _constant_boost(op):
        return None
    if not _uses_kernels(op):
        return [fast(op, lo, lo.value(x))]
    return guarded(lo, op, fast)


@dataclasses.dataclass(frozen=True)
class _LayerFamily:
    """What differs between the conv and the linear fast path: the name of an unnamed result, the generic
    (cuDNN-free TVM) expression, the geometry, the two GPU kernel generators and the output shape."""

    default_name: str
    generic: Callable[..., relax.Expr]
    geometry: Callable[[Any], Any]
    scatter: Callable[..., Kernel | None]
    gather: Callable[..., Kernel]
    prefix: str
    output_shape: Callable[[Any], tuple[Any, ...]]


def _layer_fast(family: _LayerFamily, op: ops.SparseConv2D | ops.SparseLinear, lo: RelaxLowering,
                xv: relax.Expr) -> relax.Expr:
    """The unguarded lowering of a conv / linear layer: a generic dense expression, or the scatter kernel (for
    sparse-sparse and activation-sparse layers, where it applies) else the gather kernel; then the k-WTA."""
    weight, bias = _constant(op.weight), _constant(op.bias)
    assert weight is not None
    epilogue = Epilogue.of_op(op)
    pre, kwta, post = epilogue.before_kwta, epilogue.kwta, epilogue.after_kwta
    kind = op.kernel
    name = op.result.name or family.default_name
    if kind in ("dense", "auto"):
        y = _generic_stages(lo, family.generic(lo, xv, op), pre.stages)
    else:
        geometry = family.geometry(op)
        kernel = None
        if kind in ("sparse_sparse", "act_sparse"):
            kernel = family.scatter(geometry, weight, bias, pre, name, kind=f"{family.prefix}_{kind}",
                                    flavour=_flavour(lo))
        if kernel is None:
            kernel = family.gather(geometry, weight, bias, pre, name, flavour=_flavour(lo))
        y = _call(lo, kernel, xv, op.input.type.shape[0])
    if kwta is None:
        return y
    shape = family.output_shape(op)
    if pre.pool is not None:
        shape = _pool_shape(shape, pre.pool)
    return apply_kwta(lo, y, shape, kwta, op.boost, post, name)


_CONV = _LayerFamily("conv", conv2d_expr, ConvGeometry.of_op, K.conv2d_scatter, K.conv2d_gather, "conv2d",
                     conv2d_output_shape)
_LINEAR = _LayerFamily("linear", linear_expr, LinearGeometry.of_op, K.linear_scatter, K.linear_gather, "linear",
                       linear_output_shape)


@KERNELS.register(ops.SparseConv2D)
def sparse_conv2d(op: ops.SparseConv2D, lo: RelaxLowering) -> list[relax.Expr] | None:
    return _lower_layer(op, lo, functools.partial(_layer_fast, _CONV))  # type: ignore[arg-type]


@KERNELS.register(ops.SparseLinear)
def sparse_linear(op: ops.SparseLinear, lo: RelaxLowering) -> list[relax.Expr] | None:
    return _lower_layer(op, lo, functools.partial(_layer_fast, _LINEAR))  # type: ignore[arg-type]


@KERNELS.register(ops.KWinners)
def kwinners(op: ops.KWinners, lo: RelaxLowering) -> list[relax.Expr] | None:
    x = op.input
    if not _is_f32(x) or any(d is None for d in x.type.shape[1:]) or not _constant_boost(op):
        return None
    return guarded(lo, op, _kwinners_fast)  # type: ignore[arg-type]


def _kwinners_fast(op: ops.KWinners, lo: RelaxLowering, xv: relax.Expr) -> relax.Expr:
    x = op.input
    return apply_kwta(lo, xv, x.type.shape, Kwta.of_op(op), op.boost, Epilogue(x.type.rank),
                      op.result.name or "kwta")
