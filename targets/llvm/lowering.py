"""The llvm target's specialised kernels, by op class (see relax_lowering.KernelSet).

``sparse.conv2d`` / ``sparse.linear`` become one TIR kernel each, specialised to the layer's constant
weights, with bias, ReLU, k-WTA and max-pool fused, chosen by the layer's ``kernel``:

===================  ================================================  ==========================
kernel               conv2d                                            linear
===================  ================================================  ==========================
``dense``            :func:`~.kernels.conv2d_dense`                    :func:`~.kernels.linear_dense`
``weight_sparse``    :func:`~.kernels.conv2d_weight_sparse` (taps)     :func:`~.kernels.linear_sparse`
``act_sparse``       :func:`~.kernels.conv2d_sparse_sparse` (active    :func:`~.kernels.linear_dense`
                     inputs x dense weight columns)
``sparse_sparse``    :func:`~.kernels.conv2d_sparse_sparse`            :func:`~.kernels.linear_scatter`
===================  ================================================  ==========================

(``schedule-sparse{target=llvm}`` picks only what was measured to pay on this CPU: see the cost model.)
``sparse.kwta`` becomes :func:`~.kernels.kwta_global` / :func:`~.kernels.kwta_local`. A layer whose shape or
epilogue the kernels do not cover (strided or grouped convs outside the dense kernel, pooling windows that are
not kernel = stride, padded or ceil-mode pooling, a k-WTA over other axes) keeps the generic lowering.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...compiler.ir import ops
from ...compiler.ir.core import Operation, Value
from ...compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry
from ...compiler.ir.types import TensorType
from ..relax_lowering import KernelSet, RelaxLowering
from . import kernels as K
from .ieee import guarded_call, needs_guard

KERNELS = KernelSet()


def _constant(value: Value | None) -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value.owner, ops.Constant):
        raise _Unsupported
    return np.asarray(value.owner.value, dtype=np.float32)


class _Unsupported(Exception):
    """The specialised kernels do not cover this op: use the generic lowering."""


def _epilogue(op: ops.FusedLayer) -> Epilogue:
    """The layer's epilogue when the generators cover it (raises _Unsupported otherwise).

    The generators apply bias -> ReLU -> k-WTA, with max-pool (kernel = stride, no padding, floor) before or
    after the k-WTA. ReLU commutes with max-pool, and ReLU after k-WTA equals ReLU before it when the boost
    factors are positive (both keep exactly the positive units among the top k).
    """
    epilogue = Epilogue.of_op(op)
    boost = epilogue.boost
    if epilogue.boost_dynamic or (boost is not None and boost.size != boost.shape[1]):
        raise _Unsupported  # computed boost factors, or factors that vary within a channel
    if epilogue.relu_after_kwta and boost is not None and not np.all(boost > 0):
        raise _Unsupported
    if epilogue.pool is not None and epilogue.pool_size is None:
        raise _Unsupported
    kwta = epilogue.kwta
    if kwta is not None and not (kwta.is_global or kwta.local):
        raise _Unsupported
    return epilogue


def _emit(lo: RelaxLowering, op: ops.FusedLayer | ops.KWinners, kernel: K.Kernel) -> list[relax.Expr]:
    """Call the kernel; unless ``fast_math`` or the kernel is exact on inf/NaN anyway, inside the IEEE guard
    (:mod:`.ieee`)."""
    if not lo.fast_math and needs_guard(op, kernel.info.get("family")):
        return guarded_call(lo, op, kernel.prim_func, kernel.name, kernel.constants)
    args = [lo.value(op.input), *(lo.const(c) for c in kernel.constants)]
    return lo.call_tir(kernel.prim_func, kernel.name, args, [op.result.type])


def _unique(lo: RelaxLowering, op: Operation, family: str) -> str:
    """A global symbol for the kernel that no other kernel of the module has."""
    base = "".join(c if c.isalnum() else "_" for c in f"{family}_{op.result.name or 'layer'}")
    return f"{base}_{len(lo.kernel_names)}"


@KERNELS.register(ops.SparseConv2D)
def _conv2d(op: ops.SparseConv2D, lo: RelaxLowering) -> list[relax.Expr] | None:
    try:
        weight = _constant(op.weight)
        bias = _constant(op.bias)
        epilogue = _epilogue(op)
    except _Unsupported:
        return None
    geometry = ConvGeometry.of_op(op)
    if geometry.groups != 1 or geometry.dilations != (1, 1) or not geometry.static:
        return None
    kernel = op.kernel
    if kernel in ("act_sparse", "sparse_sparse") and geometry.strides == (1, 1):
        built = K.conv2d_sparse_sparse(geometry, weight, bias, epilogue, _unique(lo, op, "conv2d_act_sparse"),
                                       isa=lo.isa)
    elif kernel in ("weight_sparse", "sparse_sparse", "act_sparse") and geometry.strides == (1, 1):
        built = K.conv2d_weight_sparse(geometry, weight, bias, epilogue, _unique(lo, op, "conv2d_weight_sparse"),
                                       isa=lo.isa)
    else:
        built = K.conv2d_dense(geometry, weight, bias, epilogue, _unique(lo, op, "conv2d_dense"), isa=lo.isa)
    return _emit(lo, op, built)


@KERNELS.register(ops.SparseLinear)
def _linear(op: ops.SparseLinear, lo: RelaxLowering) -> list[relax.Expr] | None:
    try:
        weight = _constant(op.weight)
        bias = _constant(op.bias)
        epilogue = _epilogue(op)
    except _Unsupported:
        return None
    geometry = LinearGeometry.of_op(op)
    if epilogue.pool is not None or not geometry.static:
        return None
    if op.kernel == "sparse_sparse":
        built = K.linear_scatter(geometry, weight, bias, epilogue, _unique(lo, op, "linear_scatter"), isa=lo.isa)
    elif op.kernel == "weight_sparse":
        built = K.linear_sparse(geometry, weight, bias, epilogue, _unique(lo, op, "linear_sparse"), isa=lo.isa)
    else:
        built = K.linear_dense(geometry, weight, bias, epilogue, _unique(lo, op, "linear_dense"), isa=lo.isa)
    return _emit(lo, op, built)


@KERNELS.register(ops.KWinners)
def _kwta(op: ops.KWinners, lo: RelaxLowering) -> list[relax.Expr] | None:
    t: TensorType = op.input.type
    try:
        _constant(op.boost)
    except _Unsupported:
        return None
    if any(d is None for d in t.shape[1:]):
        return None
    kwta = Kwta.of_op(op)
    if kwta.boost is not None and not _per_channel(kwta.boost, t):
        return None
    shape = tuple(int(d) for d in t.shape[1:])  # type: ignore[arg-type]
    if kwta.is_global:
        built = K.kwta_global(shape, kwta, _unique(lo, op, "kwta_global"), isa=lo.isa)
    elif kwta.local:
        built = K.kwta_local(shape, kwta, _unique(lo, op, "kwta_local"), isa=lo.isa)  # type: ignore[arg-type]
    else:
        return None
    return _emit(lo, op, built)


def _per_channel(boost: np.ndarray, t: TensorType) -> bool:
    """The kernels take one boost factor per channel (NCHW) or per unit (N, features)."""
    return boost.size == t.shape[1] and boost.shape[1] == t.shape[1]
