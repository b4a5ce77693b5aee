"""CPU kernel generators of the llvm target: Python functions that emit TVM TIR PrimFuncs specialised to a
layer's constant weights and sparsity.

Contract (every generator): plain Python arguments (static shapes, attributes, numpy constants; no IR
objects) -> :class:`Kernel` with ``prim_func`` (params: activation input, then ``constants`` in list order,
then the output; batch dimension symbolic), ``constants`` (the packed arrays to pass) and ``name`` (also the
function's global symbol). Activations at kernel boundaries are NCHW / (B, N) float32, contiguous.

Families (one module each):

* :mod:`.conv_dense` — dense conv2d, output channels vectorized (16x16 transposed or 6x64 register tiles).
* :mod:`.conv_weight_sparse` — weight-sparse conv2d (ELL tap lists per filter, vectors along x).
* :mod:`.conv_sparse_sparse` — activation-sparse conv2d (per-pixel active-channel lists).
* :mod:`.linear` — dense linear, sparse linear (complementary permute-FMA packing per sample,
  weight-sparse SpMM for batches >= 16), and sparse-sparse linear (CSC scatter of the active inputs).
* :mod:`.kwta` — k-WTA (global / local, ties kept or broken) standalone kernels and epilogue macros.
* :mod:`.select` — exact k-th-largest selection on float keys (radix select, sampled bracket, bisection).
* :mod:`.epilogue` — the fused layer epilogue (k-WTA, max-pool) of the conv kernels.
* :mod:`.plan` — picks the family for a layer; what the llvm target should call.

Every conv/linear generator fuses bias, optional ReLU, optional k-WTA and optional max-pool (kernel =
stride, floor) into one PrimFunc. BatchNorm must already be folded into weight and bias.
"""

from .common import Kernel, build, host_target
from .conv_dense import conv2d_dense
from .conv_sparse_sparse import conv2d_sparse_sparse
from .conv_weight_sparse import conv2d_weight_sparse
from .epilogue import Kwta
from .kwta import kwta_global, kwta_local
from .linear import linear_dense, linear_scatter, linear_sparse
from .plan import conv2d, linear

__all__ = [
    "Kernel",
    "Kwta",
    "build",
    "conv2d",
    "conv2d_dense",
    "conv2d_sparse_sparse",
    "conv2d_weight_sparse",
    "host_target",
    "kwta_global",
    "kwta_local",
    "linear",
    "linear_dense",
    "linear_scatter",
    "linear_sparse",
]
