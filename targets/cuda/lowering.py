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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tvm import relax

from ...compiler.ir import ops
from ...compiler.ir.core import Operation, Value
from ...compiler.ir.ops.nn import conv2d_output_shape, linear_output_shape
from ...compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from ...compiler.ir.types import TensorType
from ..relax_lowering import KernelSet, RelaxLowering, conv2d_expr, kwta_expr, linear_expr, pool_expr
from . import kernels as K

KERNELS = KernelSet()

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


def _split_epilogue(stages: Sequence[Any]) -> tuple[list[Any], KWTAStage | None, list[Any]]:
    for i, stage in enumerate(stages):
        if isinstance(stage, KWTAStage):
            return list(stages[:i]), stage, list(stages[i + 1:])
    return list(stages), None, []


def _call(lo: RelaxLowering, kernel: K.GpuKernel, name: str, x: relax.Expr, batch_dim: int | None) -> relax.Expr:
    args = [x, *(lo.const(c) for c in kernel.constants)]
    return lo.call_tir(kernel.func, f"{kernel.kind}_{name}", args, [TensorType((batch_dim, *kernel.out_shape))])[0]


def _generic_stages(lo: RelaxLowering, y: relax.Expr, stages: Sequence[Any]) -> relax.Expr:
    for stage in stages:
        y = lo.emit(y)
        if isinstance(stage, ReluStage):
            y = relax.op.nn.relu(y)
        elif isinstance(stage, MaxPoolStage):
            y = pool_expr(y, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, "max")
    return lo.emit(y)


def _pool_shape(shape: tuple[int | None, ...], pool: MaxPoolStage) -> tuple[int | None, ...]:
    oh, ow = K.pooled_dims(shape[2], shape[3], pool)  # type: ignore[arg-type]
    return (shape[0], shape[1], oh, ow)


def apply_kwta(lo: RelaxLowering, y: relax.Expr, shape: tuple[int | None, ...], k: int, over: Sequence[int],
               ties: str, boost: Value | None, post: Sequence[Any], name: str) -> relax.Expr:
    """k-WTA (then the ``post`` stages) on ``y`` of ``shape`` with the GPU kernels where they apply."""
    rank = len(shape)
    over = tuple(over)
    boost_array = _constant(boost)
    if boost is not None and boost_array is None:
        out = lo.emit(kwta_expr(lo, y, TensorType(shape), boost, k, over, ties))
        return _generic_stages(lo, out, post)
    group = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
    if over == tuple(range(1, rank)):
        relu = any(isinstance(s, ReluStage) for s in post) and ties == "keep"
        pool = next((s for s in post if isinstance(s, MaxPoolStage)), None) if ties == "keep" and rank == 4 else None
        kernel = K.kwta_global(group, k, ties, boost_array, relu, pool)
        rest = [s for s in post if not ((relu and isinstance(s, ReluStage)) or s is pool)]
    elif over == (1,) and rank >= 3:
        relu = any(isinstance(s, ReluStage) for s in post)
        kernel = K.kwta_local(group, k, ties, boost_array, relu)
        rest = [s for s in post if not (relu and isinstance(s, ReluStage))]
    else:
        out = lo.emit(kwta_expr(lo, y, TensorType(shape), boost, k, over, ties))
        return _generic_stages(lo, out, post)
    out = _call(lo, kernel, name, y, shape[0])
    return _generic_stages(lo, out, rest) if rest else out


def _layer_pre(pre: Sequence[Any]) -> tuple[bool, MaxPoolStage | None]:
    relu = any(isinstance(s, ReluStage) for s in pre)
    pool = next((s for s in pre if isinstance(s, MaxPoolStage)), None)
    return relu, pool


@KERNELS.register(ops.SparseConv2D)
def sparse_conv2d(op: Operation, lo: RelaxLowering) -> list[relax.Expr] | None:
    x, w, b = op.operand("input"), op.operand("weight"), op.operand("bias")
    weight, bias = _constant(w), _constant(b)
    if x is None or weight is None or (b is not None and bias is None) or not _is_f32(x, w, b):
        return None
    pre, kwta, post = _split_epilogue(op.attr("epilogue"))
    kind = op.attr("kernel")
    name = op.result.name or "conv"
    xv = lo.value(x)
    shape = conv2d_output_shape(op)
    if kind in ("dense", "auto"):
        y = _generic_stages(lo, conv2d_expr(lo, xv, op), pre)
    else:
        geometry = K.ConvGeometry(tuple(x.type.shape[1:]), tuple(weight.shape), tuple(op.attr("strides")),  # type: ignore[arg-type]
                                  tuple(op.attr("pads")), tuple(op.attr("dilations")), op.attr("groups"))
        relu, pool = _layer_pre(pre)
        kernel = None
        if kind in ("sparse_sparse", "act_sparse"):
            kernel = K.conv2d_scatter(geometry, weight, bias, relu, pool, kind=f"conv2d_{kind}")
        if kernel is None:
            kernel = K.conv2d_gather(geometry, weight, bias, relu, pool)
        y = _call(lo, kernel, name, xv, x.type.shape[0])
    for stage in pre:
        if isinstance(stage, MaxPoolStage):
            shape = _pool_shape(shape, stage)
    if kwta is None:
        return [y]
    return [apply_kwta(lo, y, shape, kwta.k, kwta.over, kwta.ties, op.operand("boost"), post, name)]


@KERNELS.register(ops.SparseLinear)
def sparse_linear(op: Operation, lo: RelaxLowering) -> list[relax.Expr] | None:
    x, w, b = op.operand("input"), op.operand("weight"), op.operand("bias")
    weight, bias = _constant(w), _constant(b)
    if x is None or weight is None or (b is not None and bias is None) or not _is_f32(x, w, b):
        return None
    pre, kwta, post = _split_epilogue(op.attr("epilogue"))
    kind = op.attr("kernel")
    name = op.result.name or "linear"
    xv = lo.value(x)
    if kind in ("dense", "auto"):
        y = _generic_stages(lo, linear_expr(lo, xv, op), pre)
    else:
        relu, _ = _layer_pre(pre)
        kernel = None
        if kind in ("sparse_sparse", "act_sparse"):
            kernel = K.linear_scatter(weight, bias, relu, kind=f"linear_{kind}")
        if kernel is None:
            kernel = K.linear_gather(weight, bias, relu)
        y = _call(lo, kernel, name, xv, x.type.shape[0])
    if kwta is None:
        return [y]
    shape = linear_output_shape(op)
    return [apply_kwta(lo, y, shape, kwta.k, kwta.over, kwta.ties, op.operand("boost"), post, name)]


@KERNELS.register(ops.KWinners)
def kwinners(op: Operation, lo: RelaxLowering) -> list[relax.Expr] | None:
    x = op.operand("input")
    if x is None or not _is_f32(x) or any(d is None for d in x.type.shape[1:]):
        return None
    name = op.result.name or "kwta"
    return [apply_kwta(lo, lo.value(x), x.type.shape, op.attr("k"), op.attr("over"), op.attr("ties"),
                       op.operand("boost"), [], name)]
