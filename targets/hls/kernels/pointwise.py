"""The other HLS layer calls: affine (batch norm), ReLU, pooling, global average pooling, softmax, concat.
"""

from __future__ import annotations

import math

import numpy as np

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Operation
from sparsecc.compiler.ir.shapes import normalize_axis

from ..cpp import ConfigStruct
from ..design import Buffer, Layer, Work, sample_shape
from ..loops import LoopModel
from .common import constant_operand
from .epilogue import maxpool_cycles


class PointwiseLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _affine(self, op: ops.BatchNorm | ops.ChannelAffine) -> None:
        source = self._buffer(op.input, op)
        c, h, w = self._chw(source)
        if isinstance(op, ops.BatchNorm):
            gamma, beta, mean, var = (constant_operand(v, n, op) for v, n in (
                (op.scale, "scale"), (op.bias, "bias"), (op.mean, "mean"), (op.var, "var")))
            scale = gamma / np.sqrt(var + np.float32(op.epsilon))
            shift = beta - mean * scale
        else:
            scale = constant_operand(op.scale, "scale", op)
            shift = constant_operand(op.shift, "shift", op)
        index = self._next_index()
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "scale", "shift"))
        config = ConfigStruct(f"{ident}_config", "")
        config.constant("layer", index)
        config.constant(["channels", "height", "width"], [c, h, w])
        config.typedef(accum.ctype(), "accum_t")
        config.typedef(constants.constant_ctype(), "scale_t")
        arrays = [
            self._const(f"{ident}_scale", np.asarray(scale).reshape(-1), constants,
                        f"{op.results[0].name}: per-channel scale"),
            self._const(f"{ident}_shift", np.asarray(shift).reshape(-1), constants,
                        f"{op.results[0].name}: per-channel shift"),
        ]
        summary = f"{op.name} {source.shape_text()}: y = x * scale[c] + shift[c] (batch norm at inference)"
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::affine<{config.name}>", [a.name for a in arrays], [source], output, data, config,
                      arrays)
        layer.loops = LoopModel(pointwise=c * h * w, pointwise_entries=1)
        layer.work = Work(weight_bits=2 * c * constants.bits)
        self._add(layer)

    def _simple(self, op: Operation, function: str, summary: str, loops: LoopModel,
                config: ConfigStruct | None = None, inputs: list[Buffer] | None = None) -> None:
        x = op.operand_values[0]
        sources = inputs or [self._buffer(x, op)]
        index = self._next_index()
        ident, data, _, _, output = self._layer(op, suffixes=("config",))
        function = function.replace("ID", str(index))
        if config is not None:
            config.name = f"{ident}_config"
            config.comment = summary
            config.members.insert(0, f"static constexpr unsigned layer = {index};")
            function = function.replace("CONFIG", config.name)
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary, function, [], sources,
                      output, data, config)
        layer.loops = loops
        self._add(layer)

    def _relu(self, op: ops.Relu) -> None:
        source = self._buffer(op.input, op)
        self._simple(op, f"sparsecc::relu<{source.size}, ID>", f"{op.name} {source.shape_text()}: max(x, 0)",
                     LoopModel(pointwise=source.size, pointwise_entries=1))

    def _pool(self, op: ops.Pool2D) -> None:
        source = self._buffer(op.input, op)
        c, h, w = self._chw(source)
        if len(source.shape) != 3:
            raise CompileError(f"{op.name} needs an NCHW input", op_type=op.name)
        window = self._pool_window(op, op.kernel, op.strides, op.pads, op.ceil_mode, (h, w))
        config = ConfigStruct("", f"sparsecc::pool2d<{', '.join(map(str, window))}>")
        config.constant(["channels", "in_height", "in_width"], [c, h, w])
        average = isinstance(op, ops.AvgPool2D)
        if not average:
            self.options.mark_fast_math(config)
        if average:
            _, _, accum, _ = self._precision(op)
            config.typedef(accum.ctype(), "accum_t")
        kind = "avgpool2d" if average else "maxpool2d"
        out = sample_shape(op.results[0])
        summary = (f"{op.name} {source.shape_text()} -> {'x'.join(map(str, out))}: "
                   f"{'average' if average else 'max'} pooling {window[0]}x{window[1]} stride {window[2]}x{window[3]}")
        pooled = math.prod(out)
        cycles = pooled * math.ceil(window[0] * window[1] / 2) if average else maxpool_cycles(c * h * w, pooled,
                                                                                                window)
        self._simple(op, f"sparsecc::{kind}<CONFIG>", summary, LoopModel(pool=cycles, pool_entries=1), config)

    def _global_avgpool(self, op: ops.GlobalAvgPool2D) -> None:
        source = self._buffer(op.input, op)
        c, h, w = self._chw(source)
        config = ConfigStruct("", "")
        config.constant(["channels", "height", "width"], [c, h, w])
        _, _, accum, _ = self._precision(op)
        config.typedef(accum.ctype(), "accum_t")
        self._simple(op, "sparsecc::global_avgpool<CONFIG>", f"{op.name} {source.shape_text()} -> {c}: mean over HxW",
                     LoopModel(pool=c * h * w, pool_entries=c), config)

    def _softmax(self, op: ops.Softmax | ops.LogSoftmax) -> None:
        source = self._buffer(op.input, op)
        rank = len(source.shape) + 1
        axis = normalize_axis(op.axis, rank)
        if axis != 1 or any(d != 1 for d in source.shape[1:]):
            raise CompileError(f"{op.name} over axis {op.axis} of a rank-{rank} tensor: the HLS kernels take "
                               "(log-)softmax over the features of (batch, features)", op_type=op.name)
        kind = "log_softmax" if isinstance(op, ops.LogSoftmax) else "softmax"
        n = source.size
        self._simple(op, f"sparsecc::{kind}<{n}, ID>", f"{op.name} over {n} values (float math)",
                     LoopModel(pointwise=3 * n - 1, pointwise_entries=3))

    def _concat(self, op: ops.Concat) -> None:
        values = op.inputs
        sources = [self._buffer(v, op) for v in values]
        rank = op.results[0].type.rank
        if normalize_axis(op.axis, rank) != 1:
            raise CompileError(f"{op.name} along axis {op.axis}: the HLS target concatenates channels "
                               "(axis 1) only", op_type=op.name)
        if len(sources) != 2:
            raise CompileError(f"{op.name} of {len(sources)} inputs: the HLS kernel concatenates two", op_type=op.name)
        a, b = sources
        summary = f"{op.name} {a.shape_text()} ++ {b.shape_text()} along channels"
        self._simple(op, f"sparsecc::concat_channels<{a.size}, {b.size}, ID>", summary,
                     LoopModel(pointwise=a.size + b.size, pointwise_entries=2), inputs=sources)
