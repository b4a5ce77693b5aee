"""The ``specialize-batch`` pass: fix the dynamic batch dimension to ``size``.

Expects: arguments whose only dynamic dimension is the batch (axis 0), at least one of them dynamic (a
module whose batch is already fixed to another size is a PassError, not silently kept). Guarantees: every type becomes
static; the function is unchanged for inputs of that batch size (reshape targets keep their -1, which now
resolves to a static size).
"""

from __future__ import annotations

import dataclasses

from ..errors import PassError
from ..ir.core import Module
from .base import Pass
from .rewrite import refresh_types


@dataclasses.dataclass(frozen=True)
class SpecializeBatch(Pass):
    """Fix the dynamic batch dimension to a given size."""

    name = "specialize-batch"
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise PassError(f"specialize-batch: size must be >= 1, got {self.size}")

    def apply(self, module: Module) -> None:
        args = [a for a in module.func.args if a.type.shape]
        if not any(a.type.shape[0] is None for a in args):
            batches = sorted({a.type.shape[0] for a in args})
            if batches == [self.size]:
                return  # already this batch (e.g. specialize-batch given twice with the same size)
            raise PassError(f"specialize-batch{{size={self.size}}}: the module has no dynamic batch to fix (its "
                            f"inputs have static batch {', '.join(map(str, batches)) or 'none'})")
        for arg in module.func.args:
            shape = arg.type.shape
            if any(d is None for d in shape[1:]):
                raise PassError(f"specialize-batch: input '{arg.name}' has dynamic dimensions beyond the batch")
            if shape and shape[0] is None:
                arg.set_type(arg.type.with_shape((self.size, *shape[1:])))
        refresh_types(module.func)
