"""Pick the kernel family for a conv or linear layer from its static shapes and sparsity.

The llvm target calls these instead of a generator directly. The rules come from the measurements in
``benchmarks/kernels`` (single core, AVX-512):

conv2d
    * ``conv2d_weight_sparse`` (vectors along output x, one FMA per non-zero tap per 16 outputs) when the
      weight density is <= 1/3 or the reduction is short (C*KH*KW <= 64, e.g. 1- or 3-channel inputs), and
      stride is 1 — its cost scales with the non-zero count and its stores need no transpose;
    * ``conv2d_sparse_sparse`` (activation-sparse, output channels vectorized) when the input's k-WTA bound
      says at most ``ACT_SPARSE_MAX`` of the inputs are non-zero — its cost scales with the active inputs;
    * ``conv2d_dense`` (output channels vectorized, 16x16 or 6x64 register tiles) otherwise.

linear
    * ``linear_sparse`` when the weight density is <= 0.5, else ``linear_dense``.
"""

from __future__ import annotations

import numpy as np

from ....compiler.cost_model import (
    DENSE_ABOVE,
    LLVM_ACT_SPARSE_MAX,
    LLVM_CONV_WEIGHT_SPARSE_MAX,
    LLVM_SHORT_REDUCTION,
)
from .common import Kernel
from .conv_dense import conv2d_dense
from .conv_sparse_sparse import conv2d_sparse_sparse
from .conv_weight_sparse import conv2d_weight_sparse
from .epilogue import KwtaSpec
from .linear import linear_dense, linear_sparse

# The thresholds are the llvm profile of the compiler's cost model (one source of truth, measured on Zen 5;
# see sparsecc.compiler.cost_model): the compiler records the same choice in each layer's ``kernel``.
#: weight density at or below which the weight-sparse kernels win
WEIGHT_SPARSE_MAX = LLVM_CONV_WEIGHT_SPARSE_MAX
#: short reductions run faster vectorized along x even when dense
SHORT_REDUCTION = LLVM_SHORT_REDUCTION
#: input activity (fraction non-zero, from the upstream k-WTA bound) at or below which the activation-sparse
#: kernel wins
ACT_SPARSE_MAX = LLVM_ACT_SPARSE_MAX


def conv2d(
    in_shape: tuple[int, int, int],
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    relu: bool = False,
    kwta: KwtaSpec | None = None,
    pool: int | None = None,
    pool_first: bool = False,
    name: str = "conv2d",
    active_fraction: float | None = None,
) -> Kernel:
    """The best conv2d kernel for this layer (see module doc). ``active_fraction``: bound on the fraction
    of non-zero inputs (from an upstream k-WTA), or None when unknown (dense)."""
    density = float((weight != 0).mean())
    reduction = int(np.prod(weight.shape[1:]))
    stride1 = tuple(stride) == (1, 1)
    if stride1 and active_fraction is not None and active_fraction <= ACT_SPARSE_MAX:
        return conv2d_sparse_sparse(in_shape, weight, bias, padding, relu, kwta, pool, pool_first, name)
    if stride1 and (density <= WEIGHT_SPARSE_MAX or reduction <= SHORT_REDUCTION):
        return conv2d_weight_sparse(in_shape, weight, bias, stride, padding, relu, kwta, pool, pool_first, name)
    return conv2d_dense(in_shape, weight, bias, stride, padding, relu, kwta, pool, pool_first, name)


def linear(
    in_features: int,
    weight: np.ndarray,
    bias: np.ndarray | None,
    relu: bool = False,
    kwta: KwtaSpec | None = None,
    name: str = "linear",
) -> Kernel:
    """The best linear kernel for this layer (see module doc)."""
    if float((weight != 0).mean()) <= DENSE_ABOVE:
        return linear_sparse(in_features, weight, bias, relu, kwta, name)
    return linear_dense(in_features, weight, bias, relu, kwta, name)
