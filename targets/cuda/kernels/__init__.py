"""GPU TIR kernels of the cuda target, each specialised to its layer's constant weights and sparsity.

Every generator is a plain function of static shapes, attributes and numpy constants that returns a
:class:`Kernel`: a TIR ``PrimFunc`` with params ``(activation, *constants, output)`` (batch symbolic) plus the
packed constants. Kernels are written as *phases*: consecutive ``threadIdx.x`` loops inside one
``blockIdx.x`` loop. TVM fuses the phases into one thread scope and its ThreadSync pass puts a
``__syncthreads()`` wherever a phase reads shared memory that an earlier phase wrote, so no barrier is written
by hand. Values that live across phases are in shared memory (per thread: indexed by ``threadIdx.x``) or, when
every thread holds the same value, in ``local`` scalars that each thread recomputes identically.

The same code is emitted with the :data:`CPU` flavour as serial loops (blocks, then each phase's threads one
after another; shared memory becomes ordinary scratch, atomics plain adds), which TVM's llvm backend runs: the
tests check every kernel's logic against numpy on machines without a GPU. :meth:`Flavour.emulation` with a
seed runs the threads of every phase (and the blocks) in a shuffled order, so that a result depending on the
order of threads shows up as a bitwise difference between seeds.

**Deterministic by design.** No float is ever accumulated with an atomic or by two threads in one phase: every
float sum has one owner thread at a time and a fixed order, so the bits of every output are the same on every
run and every GPU. The only atomics are the k-WTA histogram's integer increments (exact in any order). The
generators check their assumptions (power-of-two block sizes for the scans, lanes dividing the block, packed
code ranges) and raise :class:`CompileError` otherwise.

Kernels (``T`` threads per block, ``B`` the batch), one module per family (shared parts in :mod:`.common`):

* :func:`kwta_global` — k-WTA over a whole sample (a ``(B, n)`` row or a flattened ``C*H*W``): one block per
  sample. Exact threshold by 4-pass MSD radix select on order-preserving uint32 keys of the boosted values
  (8-bit digits; per pass each warp builds its own 256-bin shared histogram with integer shared atomics over
  the keys that match the prefix so far, the warps' bins are summed, a block suffix scan over the 256 bins
  follows, and the one thread whose digit holds rank k publishes it). ``ties="keep"`` masks
  ``key < threshold``; ``"break"`` keeps, among keys equal to the threshold, the first ones in flat order
  (per-thread contiguous segments, one block-wide prefix sum of their tie counts). A following ReLU and/or
  max-pool are fused (ties kept).
* :func:`kwta_local` — k-WTA over the channels at each pixel: one thread per (sample, pixel), keys in
  registers, threshold by 32-step bisection on the key bits (largest t with #(key >= t) >= k).
* :func:`conv2d_gather` — weight-sparse conv: one thread per output element, looping over its filter's
  non-zero taps only (CSR per filter; padding, stride, dilation, groups), bias and a fused ReLU / max-pool.
* :func:`conv2d_scatter` — sparse-sparse conv (also used for activation-sparse with dense weights): one block
  per (sample, group of output channels), so a sample spreads over several blocks. The block compacts the
  sample's non-zero inputs (chunks of ``T``, in index order by a block prefix sum), then a warp per active
  input (8 in flight per 256-thread block) scatters it over the non-zero taps of its input channel (CSC-like
  lists per channel and group) into the warp's own copy of the accumulator tile, one barrier per round of
  inputs (:func:`scatter_active`); the epilogue sums the copies in warp order, adds the bias and applies ReLU
  and max-pool.
* :func:`linear_gather` — weight-sparse linear: one thread per (sample, unit) over its row's non-zeros
  (ELL transposed for a fixed fan-in, so consecutive threads read consecutive weights; CSR otherwise).
* :func:`linear_scatter` — sparse-sparse linear (and activation-sparse with dense weights): one block per
  (sample, slice of at most :data:`LINEAR_SLICE` units); the same warp-per-active-input scatter over the
  slice's CSC columns, then the copies summed in warp order.
"""

from .common import CPU, GPU, THREADS, Flavour, pooled_dims
from .conv_sparse_sparse import conv2d_scatter
from .conv_weight_sparse import conv2d_gather
from .kwta import kwta_global, kwta_local
from .linear import linear_gather, linear_scatter

__all__ = ["CPU", "GPU", "THREADS", "Flavour", "conv2d_gather", "conv2d_scatter", "kwta_global", "kwta_local",
           "linear_gather", "linear_scatter", "pooled_dims"]
