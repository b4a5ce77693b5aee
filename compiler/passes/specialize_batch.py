"""The ``specialize-batch`` pass: fix the dynamic batch dimension to ``size``.

Expects: arguments whose only dynamic dimension is the batch (axis 0). Guarantees: every type becomes
static; the function is unchanged for inputs of that batch size (reshape targets keep their -1, which now
resolves to a static size).
"""

from __future__ import annotations

import dataclasses

from ..errors import PassError
from ..ir.core import Module
from .base import Pass
from .rewrite import refresh_types


@dataclasses.dataclass
class SpecializeBatch(Pass):
    """Fix the dynamic batch dimension to a given size."""

    name = "specialize-batch"
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise PassError(f"specialize-batch: size must be >= 1, got {self.size}")

    def apply(self, module: Module) -> None:
        for arg in module.func.args:
            shape = arg.type.shape
            if any(d is None for d in shape[1:]):
                raise PassError(f"specialize-batch: input '{arg.name}' has dynamic dimensions beyond the batch")
            if shape and shape[0] is None:
                arg.set_type(arg.type.with_shape((self.size, *shape[1:])))
        refresh_types(module.func)
