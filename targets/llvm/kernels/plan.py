"""Pick the kernel family for a conv or linear layer from its static shapes, sparsity and a kernel profile.

For direct use of the generators (tests, ``benchmarks/kernels``); compiled models get their kernel from
``schedule-sparse``, which applies the same profile (:mod:`sparsecc.compiler.kernel_profile`, one source of
truth). Default profile: the one of the host's ISA class.

conv2d
    the family :meth:`KernelProfile.llvm_conv_kernel` names (the rule ``schedule-sparse`` applies):
    ``conv2d_sparse_sparse`` (activation-sparse), ``conv2d_weight_sparse`` (tap lists) or ``conv2d_dense``.

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
    family = _profile(profile).llvm_conv_kernel(
        density=float((weight != 0).mean()),
        activity=1.0 if active_fraction is None else active_fraction,
        reduction=int(np.prod(weight.shape[1:])),
        plain=tuple(geometry.strides) == (1, 1),
    )
    generator = {"act_sparse": conv2d_sparse_sparse, "weight_sparse": conv2d_weight_sparse}.get(family, conv2d_dense)
    return generator(geometry, weight, bias, epilogue, name)


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
