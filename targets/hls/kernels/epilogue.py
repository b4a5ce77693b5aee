"""The fused epilogue of an HLS conv / linear layer (ReLU, k-WTA, max-pool, from the layer's
:class:`~sparsecc.compiler.ir.layer.Epilogue`): its config members, bias / boost arrays, loops and buffers.
"""

from __future__ import annotations

import math

import numpy as np

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Operation
from sparsecc.compiler.ir.layer import Epilogue, Kwta
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.ir.shapes import window_output_dim

from ..cpp import ConfigStruct, ConstArray
from ..design import Layer, element_bits
from ..loops import KwtaLoops
from ..precision import Precision, boost_precision
from .common import constant_operand, per_channel


def key_bits(data: Precision, boost: ConstArray | None) -> int:
    """Bits of the k-WTA order key: 32 for float, the (product) width for ap_fixed."""
    if data.is_float:
        return 32
    return data.bits + (element_bits(boost, data) if boost is not None else 0)


def pooled_size(size: int, kernel: int, stride: int) -> int:
    return 0 if size < kernel else (size - kernel) // stride + 1


def maxpool_cycles(inputs: int, outputs: int, window: tuple[int, int, int, int]) -> int:
    """Cycles of maxpool_impl (pool.h): one pass over the input for windows that do not overlap, else
    ceil(KH*KW / 2) per output (reads of a dual-port buffer)."""
    kh, kw, sh, sw = window
    if sh >= kh and sw >= kw:
        return inputs
    return outputs * math.ceil(kh * kw / 2)


class EpilogueLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _epilogue(self, op: ops.WeightedLayer, config: ConfigStruct, channels: int, pre_pool: tuple[int, int],
                  data: Precision, constants: Precision, index: int, lanes: int
                  ) -> tuple[list[str], Kwta | None, tuple[int, int, int, int] | None, bool, bool]:
        """Fill the epilogue members; returns (descriptions, k-WTA, pool window, pool_before_kwta, relu)."""
        epilogue = Epilogue.of_op(op)
        boost = op.boost if isinstance(op, ops.FusedLayer) else None  # only a fused layer has an epilogue
        notes: list[str] = []
        kwta: Kwta | None = None
        pool: tuple[int, int, int, int] | None = None
        for stage in epilogue.stages:
            if isinstance(stage, ReluStage):
                config.constant("relu", True, "bool")
                notes.append("ReLU")
            elif isinstance(stage, KWTAStage):
                assert epilogue.kwta is not None
                kwta = self._kwta_mode(op, epilogue.kwta)
                notes.append(f"k-WTA(k={stage.k}, {'local' if kwta.local else 'global'}"
                             f"{', ties broken' if kwta.break_ties else ''}"
                             f"{', boosted' if boost is not None else ''})")
            elif isinstance(stage, MaxPoolStage):
                pool = self._pool_window(op, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, pre_pool)
                notes.append(f"max-pool {stage.kernel[0]}x{stage.kernel[1]}"
                             + (f"/{stage.strides[0]}x{stage.strides[1]}" if tuple(stage.strides) != tuple(
                                 stage.kernel) else ""))
        if kwta is not None:
            nested = ConfigStruct("kwta_config", "sparsecc::kwta_defaults")
            nested.constant("layer", index)
            nested.constant("lanes", lanes, note="values counted / selected per cycle (global k-WTA)")
            nested.constant("k", kwta.k)
            if kwta.local:
                nested.constant("local", True, "bool")
            if kwta.break_ties:
                nested.constant("break_ties", True, "bool")
            if boost is not None:
                nested.constant("boost", True, "bool", "select on x * boost[c]")
                factors = constant_operand(boost, "boost", op)
                nested.typedef(boost_precision(constants, factors).constant_ctype(), "boost_t")
            nested.constant("radix_bits", self.options.radix_bits)
            config.nested.append(nested)
            if epilogue.relu_after_kwta:
                config.constant("relu_after_kwta", True, "bool", "ReLU on the winners")
        if pool is not None:
            config.typedef(f"sparsecc::pool2d<{', '.join(map(str, pool))}>", "pool_config")
            if epilogue.pool_first:
                config.constant("pool_before_kwta", True, "bool", "k-WTA selects among the pooled values")
        return notes, kwta, pool, epilogue.pool_first, epilogue.relu

    def _kwta_mode(self, op: Operation, kwta: Kwta) -> Kwta:
        """``kwta`` when the HLS k-WTA unit covers it: global over C*H*W or the features, local over C."""
        if not ((kwta.rank == 4 and (kwta.is_global or kwta.local)) or (kwta.rank == 2 and kwta.is_global)):
            raise CompileError(f"k-WTA over axes {list(kwta.over)} of a rank-{kwta.rank} tensor: the HLS k-WTA unit "
                               "selects over C*H*W (global), over C at each pixel (local) or over the features",
                               op_type=op.name)
        return kwta

    def _pool_window(self, op: Operation, kernel: tuple[int, ...], strides: tuple[int, ...],
                     pads: tuple[int, ...], ceil_mode: bool, size: tuple[int, int]) -> tuple[int, int, int, int]:
        if any(pads):
            raise CompileError(f"pooling with padding {list(pads)} is not supported by the HLS kernels",
                               op_type=op.name)
        for axis in range(2):
            floor = window_output_dim(size[axis], kernel[axis], strides[axis], 0, 0, 1, False)
            if ceil_mode and window_output_dim(size[axis], kernel[axis], strides[axis], 0, 0, 1, True) != floor:
                raise CompileError("pooling in ceil mode with a partial last window is not supported by the HLS "
                                   "kernels", op_type=op.name)
        return int(kernel[0]), int(kernel[1]), int(strides[0]), int(strides[1])

    def _epilogue_args(self, config: ConfigStruct, units: int, boost: str | None) -> list[str]:
        """scale, shift and boost of a fused layer: batch norm is folded into the weights by the passes, so
        scale / shift are never read; boost is the layer's array when its k-WTA boosts."""
        unused = f"sparsecc::no_values<{config.name}::scale_t, {units}>::values"
        return [unused, unused, boost or f"sparsecc::no_values<{config.name}::kwta_config::boost_t, {units}>::values"]

    def _epilogue_loops(self, layer: Layer, dims: tuple[int, int, int], kwta: Kwta | None,
                        pool: tuple[int, int, int, int] | None, pool_first: bool, relu: bool) -> None:
        """The epilogue's loops (pointwise, k-WTA, pooling) and its buffers."""
        channels, height, width = dims
        n = channels * height * width
        loops = layer.loops
        loops.pointwise, loops.pointwise_entries = n, 1
        data_bits = layer.precision.bits
        late_relu = relu and kwta is not None and layer.config is not None and any(
            "relu_after_kwta" in m for m in layer.config.members)
        kwta_size = n
        if pool is not None:
            pooled = channels * pooled_size(height, pool[0], pool[2]) * pooled_size(width, pool[1], pool[3])
            loops.pool, loops.pool_entries = maxpool_cycles(n, pooled, pool), 1
            if pool_first and kwta is not None:
                kwta_size = pooled
        if kwta is not None:
            groups = (kwta_size // channels) if kwta.local else 1
            boost = next((a for a in layer.arrays if a.name.endswith("_boost")), None)
            loops.kwta = KwtaLoops(groups, kwta_size // groups, key_bits(layer.precision, boost), kwta.local,
                                   self.options.radix_bits)
        if late_relu:
            loops.pointwise += layer.output.size
            loops.pointwise_entries += 1
        if kwta is not None or pool is not None:
            kwta_lanes = layer.lanes if kwta is not None and not kwta.local else 1
            layer.rams.append(("epilogue activations (act)", n, data_bits, kwta_lanes, 2))
            if kwta is not None and pool is not None:
                layer.rams.append(("k-WTA winners / pooled values", n if not pool_first else kwta_size, data_bits,
                                   kwta_lanes, 2))

    def _bias_boost(self, op: ops.WeightedLayer, ident: str, units: int, constants: Precision,
                    arrays: list[ConstArray]) -> tuple[str, str | None]:
        bias = constant_operand(op.bias, "bias", op)
        if bias is None:
            bias = np.zeros(units, dtype=np.float32)
            note = "bias: the model has none (zeros)"
        else:
            note = f"bias[{units}]"
        arrays.append(self._const(f"{ident}_bias", bias.reshape(-1), constants, f"{op.results[0].name}: {note}"))
        boost = per_channel(constant_operand(op.boost, "boost", op), units, "the k-WTA boost", op) \
            if isinstance(op, ops.FusedLayer) else None
        if boost is None:
            return f"{ident}_bias", None
        arrays.append(self._boost_array(f"{ident}_boost", boost, constants, op))
        return f"{ident}_bias", f"{ident}_boost"

    def _boost_array(self, name: str, boost: np.ndarray, constants: Precision, op: Operation) -> ConstArray:
        precision = boost_precision(constants, boost)
        return self._const(name, boost, precision, f"{op.results[0].name}: k-WTA boost factor per channel "
                                                   f"(selection only), {precision}")
