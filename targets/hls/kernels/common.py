"""What the HLS layer emitters share: the operand constants, the lanes of a layer, the MAC-layer work and buffers,
the kernel function of a (kernel, storage) pair.
"""

from __future__ import annotations

from typing import Any, NamedTuple, overload

import numpy as np

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Operation, Value

from ..cpp import ConfigStruct
from ..design import Buffer, Layer, Work, element_bits
from ..loops import COLUMN, GATHER, PACKED, PACKED_SCATTER, SCATTER
from ..precision import Precision


@overload
def constant_operand(value: Value, what: str, op: Operation) -> np.ndarray: ...
@overload
def constant_operand(value: Value | None, what: str, op: Operation) -> np.ndarray | None: ...
def constant_operand(value: Value | None, what: str, op: Operation) -> np.ndarray | None:
    """The value of a constant operand (None for an absent optional one); a computed one is a CompileError."""
    if value is None:
        return None
    if not isinstance(value.owner, ops.Constant):
        raise CompileError(f"the {what} of {op.name} %{op.results[0].name} must be a constant for the HLS target "
                           f"(weights live in on-chip ROMs)", op_type=op.name)
    return np.asarray(value.owner.value)


def per_channel(array: np.ndarray | None, channels: int, what: str, op: Operation) -> np.ndarray | None:
    """Boost factors (1, C[, 1, 1]) or (1, 1, ...) as a vector of C values."""
    if array is None:
        return None
    squeezed = array.reshape(array.shape[0], array.shape[1] if array.ndim > 1 else 1, -1)
    if squeezed.shape[2] != 1 or squeezed.shape[0] != 1:
        raise CompileError(f"{what} of shape {list(array.shape)} varies within a channel; the HLS k-WTA unit "
                           "takes one factor per channel", op_type=op.name)
    vector = squeezed.reshape(-1)
    if vector.size == 1:
        vector = np.full(channels, vector[0], dtype=vector.dtype)
    if vector.size != channels:
        raise CompileError(f"{what} has {vector.size} entries for {channels} channels", op_type=op.name)
    return vector


def kernel_function(kernel: str, storage: str) -> str:
    """The kernel name suffix for a kernel kind and the weight storage used."""
    if storage == "dense":
        return "act_sparse" if kernel == "act_sparse" else "dense"
    if storage == "complementary":
        return "complementary_sparse" if kernel == "sparse_sparse" else "complementary"
    return {"ell": "ell", "csc": "sparse_sparse"}[storage]


def skips_zero_weights(function: str) -> bool:
    """Whether a conv2d_* / linear_* kernel never forms ``0 * x`` for its zero weights (a float IEEE design then
    runs the kernel's IEEE stage, runtime/hls/include/sparsecc/ieee.h)."""
    return function.split("_", 1)[1] in ("ell", "sparse_sparse", "complementary", "complementary_sparse")


def mac_kind(function: str) -> str:
    """The MAC loop kind (loops.py) of a conv2d_* / linear_* kernel."""
    suffix = function.split("_", 1)[1]
    return {"dense": GATHER, "ell": GATHER, "sparse_sparse": SCATTER, "act_sparse": COLUMN,
            "complementary": PACKED, "complementary_sparse": PACKED_SCATTER}[suffix]


class LayerStart(NamedTuple):
    """What a conv or linear layer's emitter decides before its own geometry: kernel and storage (after
    packing), the kernel function, layer index and lanes, identifiers and precisions, and its config struct."""

    kernel: str
    storage: str
    packed: Any
    packing_note: str
    function: str
    index: int
    lanes: int
    ident: str
    data: Precision
    constants: Precision
    accum: Precision
    output: Buffer
    config: ConfigStruct


class LayerCommon:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _layer_lanes(self, op: Operation, storage: str) -> int:
        lanes = self.lanes.get(op.results[0].name or "", 1)
        return 1 if storage == "complementary" else lanes

    def _weighted_layer_start(self, op: ops.WeightedLayer, matrix: np.ndarray, family: str) -> LayerStart:
        """Kernel, storage and packing of a conv/linear layer (``family`` ``conv2d`` or ``linear``) whose weight is
        ``matrix``, its identifiers and precisions, and its config struct holding layer index, fast-math mark
        and lanes."""
        kernel, storage = self._kernel_choice(op)
        storage, packed, packing_note = self._packing(kernel, storage, matrix, op.weight.type.encoding)
        function = f"{family}_" + kernel_function(kernel, storage)
        index = self._next_index()
        lanes = self._layer_lanes(op, storage)
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "w", "idx", "val", "bias",
                                                                           "boost", "col_ptr", "row_idx"))
        config = ConfigStruct(f"{ident}_config", f"sparsecc::{family}_defaults")
        config.constant("layer", index)
        self.options.mark_fast_math(config)
        config.constant("lanes", lanes, note="MAC lanes: UNROLL factor of the MAC loop, partition factor of its "
                                             "arrays")
        return LayerStart(kernel, storage, packed, packing_note, function, index, lanes, ident, data, constants,
                          accum, output, config)

    def _fill_work(self, layer: Layer, macs: float, kind: str, source: Buffer, acc_size: int,
                   accum: Precision) -> None:
        """MACs (for the report), constants and buffers of a conv / linear layer."""
        layer.work = Work(macs=macs, weight_bits=sum(a.count * element_bits(a, layer.precision) for a in layer.arrays))
        lanes = layer.lanes
        layer.banked_arrays = tuple(a.name for a in layer.arrays if a.name.endswith(
            ("_w", "_idx", "_val", "_row_idx")))
        acc_banks = lanes if kind in (SCATTER, COLUMN) else 1
        layer.rams.append(("accumulator", acc_size, accum.bits, acc_banks, 2))
        if kind == GATHER and lanes > 2 and layer.loops.replicate:
            layer.rams.append(("input replicas", source.size, source.precision.bits, 1, (lanes + 1) // 2))

    def _ieee_stage(self, layer: Layer, function: str, units: int, pixels: int) -> None:
        """The IEEE stage of a weight-skipping kernel in a float design (ieee.h): its scan cycles, and its
        memory: the per-pixel window counters (ELL) or the unit mask (column formats)."""
        layer.loops.ieee_scan = self.options.ieee and skips_zero_weights(function)
        if layer.loops.ieee_scan:
            if function.endswith("_ell"):
                layer.rams.append(("IEEE stage: window counters", pixels, 32, 1, 1))
            else:
                layer.rams.append(("IEEE stage: unit mask", units, 1, 1, 1))

    def _chw(self, buffer: Buffer) -> tuple[int, int, int]:
        if len(buffer.shape) == 3:
            return buffer.shape  # type: ignore[return-value]
        if len(buffer.shape) == 1:
            return buffer.shape[0], 1, 1
        raise CompileError(f"buffer {buffer.name} of shape {list(buffer.shape)} is neither NCHW nor (N, features)")
