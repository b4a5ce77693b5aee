"""Pick the kernel family for a conv or linear layer from its static shapes, sparsity and a kernel profile.

For direct use of the generators (tests, ``benchmarks/kernels``); compiled models get their kernel from
``schedule-sparse``, which applies the same profile (:mod:`sparsecc.compiler.kernel_profile`, one source of
truth). Default profile: the one of the host's ISA class.

conv2d
    * ``conv2d_sparse_sparse`` (activation-sparse) when stride is 1 and the input's k-WTA bound says at most
      ``conv_act_sparse_max`` of the inputs are non-zero;
    * ``conv2d_weight_sparse`` (tap lists) when stride is 1 and the weight density is at most
      ``conv_weight_sparse_max`` or the reduction is short (``conv_short_reduction``);
    * ``conv2d_dense`` otherwise.

linear
    * ``linear_sparse`` when the weight density is at most ``dense_above``, else ``linear_dense``.
"""

from __future__ import annotations

import numpy as np

from ....compiler.ir.layer import ConvGeometry, Epilogue, LinearGeometry
from ....compiler.kernel_profile import BUILTIN, KernelProfile, profile_for
from .common import NO_EPILOGUE, NO_LINEAR_EPILOGUE, Kernel, host_isa
from .conv_dense import conv2d_dense
from .conv_sparse_sparse import conv2d_sparse_sparse
from .conv_weight_sparse import conv2d_weight_sparse
from .linear import linear_dense, linear_sparse


def _profile(profile: KernelProfile | None) -> KernelProfile:
    return profile or BUILTIN[profile_for("llvm", host_isa())]


def conv2d(
    geometry: ConvGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_EPILOGUE,
    name: str = "conv2d",
    active_fraction: float | None = None,
    profile: KernelProfile | None = None,
) -> Kernel:
    """The best conv2d kernel for this layer (see module doc). ``active_fraction``: bound on the fraction
    of non-zero inputs (from an upstream k-WTA), or None when unknown (dense)."""
    p = _profile(profile)
    density = float((weight != 0).mean())
    reduction = int(np.prod(weight.shape[1:]))
    stride1 = tuple(geometry.strides) == (1, 1)
    if stride1 and active_fraction is not None and active_fraction <= p.conv_act_sparse_max:
        return conv2d_sparse_sparse(geometry, weight, bias, epilogue, name)
    if stride1 and (density <= p.conv_weight_sparse_max or reduction <= p.conv_short_reduction):
        return conv2d_weight_sparse(geometry, weight, bias, epilogue, name)
    return conv2d_dense(geometry, weight, bias, epilogue, name)


def linear(
    geometry: LinearGeometry,
    weight: np.ndarray,
    bias: np.ndarray | None,
    epilogue: Epilogue = NO_LINEAR_EPILOGUE,
    name: str = "linear",
    profile: KernelProfile | None = None,
) -> Kernel:
    """The best linear kernel for this layer (see module doc)."""
    if float((weight != 0).mean()) <= _profile(profile).dense_above:
        return linear_sparse(geometry, weight, bias, epilogue, name)
    return linear_dense(geometry, weight, bias, epilogue, name)
