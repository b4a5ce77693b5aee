"""The result of every TIR kernel generator (llvm and cuda targets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tvm import tirx

from . import tvmscript

tvmscript.install()  # every generator imports this module: macros expand without TVM's source scan


@dataclass
class Kernel:
    """A generated kernel.

    Attributes:
        prim_func: the TIR function; params are (activations..., *constants, output), batch symbolic.
        constants: packed/compressed constant arrays, in parameter order.
        name: the kernel's symbol (llvm: the function's ``global_symbol``; cuda: the name the lowering gives
            the device function, ``<family>_<layer>``).
        info: numbers for reports and tests (``family``, e.g. ``dense_macs``, ``nonzero_macs`` per sample).
        out_shape: the output's shape per sample, without the batch (None where the caller knows it).
    """

    prim_func: tirx.PrimFunc
    constants: list[np.ndarray]
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    out_shape: tuple[int, ...] | None = None
