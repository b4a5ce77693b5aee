"""The llvm target's specialised kernels, registered by op class (see relax_lowering.KernelSet)."""

from __future__ import annotations

from ..relax_lowering import KernelSet

KERNELS = KernelSet()
