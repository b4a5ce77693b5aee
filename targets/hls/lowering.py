"""From optimised IR to a list of HLS layer calls: which kernel each op becomes (the hls target's op-to-kernel table).

:class:`Lowering` walks the function in order and hands each op to its emitter in :mod:`.kernels` (one module per
kernel family: conv, linear, k-WTA, point-wise, with the weight storage and the fused epilogue); the lowered
design's types are in :mod:`.design`. Every compute op becomes a :class:`Layer`: the kernel of the
header library it calls (``sparsecc::conv2d_sparse_sparse<cfg>``), its config struct, its constant arrays in
the storage format the ``compress-weights`` pass chose, the buffers it reads and writes, and the work it does
per sample (for the estimates). Shape-only ops (``tensor.reshape``, ``tensor.identity``, ``nn.dropout``) are
views: their result names the input's buffer (NCHW samples are flat). Constants are consumed by the layers
that read them. Any other op raises :class:`CompileError` naming it.

Kernel choice per fused layer (``sparse.conv2d`` / ``sparse.linear``), from the ``kernel`` attribute and the
weight's encoding:

================  ==========================  =====================================================
kernel            weight encoding             kernel called / weight header format
================  ==========================  =====================================================
dense             none / ``#sparse``          ``*_dense``: w[O][COLS]
act_sparse        none / ``#sparse``          ``*_act_sparse``: w[O][COLS], only non-zero inputs
weight_sparse     ``#ell``                    ``*_ell``: idx/val[O][fan_in]
weight_sparse     ``#csr``, ``#bsr``          ``*_ell`` (rows as ELL; BSR keeps only true non-zeros)
weight_sparse     ``#csc``                    ``*_sparse_sparse`` (CSC scatter; skips zero inputs too)
sparse_sparse     ``#csc``                    ``*_sparse_sparse``: col_ptr/row_idx/val
sparse_sparse     ``#ell``/``#csr``/``#bsr``  ``*_sparse_sparse`` (converted to CSC)
================  ==========================  =====================================================

With ``packing="complementary"`` weight-sparse layers use ``*_complementary`` and sparse-sparse layers
``*_complementary_sparse`` (formats.h). ``kernel="auto"`` (schedule-sparse not run) counts as dense or
weight-sparse by the encoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Module, Operation, Value

from .cpp import ConstArray, identifier, index_ctype
from .design import Buffer, Design, Layer, Port, View, sample_shape
from .kernels import (
    ConvLowering,
    EpilogueLowering,
    KwtaLowering,
    LayerCommon,
    LinearLowering,
    PointwiseLowering,
    WeightLowering,
)
from .options import HLSOptions
from .precision import Precision, accumulator_for, saturating

#: Layers a design may have (the instrumentation counters of common.h: instrument::MAX_LAYERS).
MAX_LAYERS = 512


class Lowering(ConvLowering, LinearLowering, KwtaLowering, PointwiseLowering, EpilogueLowering, WeightLowering,
               LayerCommon):
    """Lower one optimised module (see module docstring)."""

    def __init__(self, module: Module, options: HLSOptions, lanes: dict[str, int] | None = None,
                 dense: bool = False, gather: frozenset[str] = frozenset()) -> None:
        """``lanes``: per layer (IR result name) the lanes to generate (1 where absent); ``dense``: lower every
        conv / linear layer with dense weights and a dense kernel (the dense twin of the network); ``gather``:
        layers whose sparse-sparse kernel is replaced by the weight-sparse ELL gather (no activation skipping,
        but its loop parallelises without a per-tap iteration; chosen by the lanes chooser for large budgets)."""
        self.module = module
        self.options = options
        self.lanes = lanes or {}
        self.dense = dense
        self.gather = gather
        self.taken: set[str] = set()
        self.buffers: dict[int, Buffer] = {}
        self.steps: list[Layer | View] = []
        self.layer_types: dict[str, Precision] = {}
        self._overrides = options.layer_precisions
        self._used_overrides: set[str] = set()

    def run(self) -> Design:
        func = self.module.func
        top = identifier(self.module.name or "model", self.taken)
        inputs = []
        for arg in func.args:
            ident = identifier(arg.name or "input", self.taken)
            # AXI-stream ports are read into an array; array ports are read by the layers directly
            name = identifier(f"{ident}_buf", self.taken) if self.options.interface == "axis" else ident
            buffer = Buffer(name, "input_t", self.options.precision, sample_shape(arg))
            self.buffers[id(arg)] = buffer
            inputs.append(Port(arg.name or ident, ident, buffer))
        output_idents = [identifier(name or "output", self.taken) for name in func.output_names]
        for op in func.ops:
            self._lower(op)
        outputs = []
        for name, ident, value in zip(func.output_names, output_idents, func.outputs, strict=True):
            outputs.append(Port(name, ident, self._buffer(value, None)))
        if sum(isinstance(s, Layer) for s in self.steps) > MAX_LAYERS:
            raise CompileError(f"the HLS target supports at most {MAX_LAYERS} layers")
        unknown = sorted(set(self._overrides) - self._used_overrides)
        if unknown:
            names = [s.name for s in self.steps if isinstance(s, Layer)]
            raise CompileError(f"layer_precision names unknown layer(s) {unknown}; layers: {', '.join(names)}")
        return Design(self.module.name, top, self.options, inputs, outputs, self.steps, self.layer_types)

    def _buffer(self, value: Value, op: Operation | None) -> Buffer:
        buffer = self.buffers.get(id(value))
        if buffer is None:
            what = f"operand %{value.name} of {op.name}" if op else f"output %{value.name}"
            producer = value.owner.name if value.owner is not None else "an argument"
            raise CompileError(f"{what} is produced by {producer}, which the HLS target does not keep as an "
                               "activation buffer", op_type=op.name if op else None)
        return buffer

    def _precision(self, op: Operation) -> tuple[Precision, Precision, Precision, str]:
        """(data, constants, accumulator, C type name of the data) of a layer."""
        name = op.results[0].name or ""
        override = self._overrides.get(name)
        if override is not None:
            self._used_overrides.add(name)
            return override, override, accumulator_for(override), ""
        data = self.options.precision
        return data, self.options.constants, self.options.accum_precision or accumulator_for(data), "data_t"

    def _layer(self, op: Operation, *, suffixes: tuple[str, ...] = ()) -> tuple[str, Precision, Precision,
                                                                              Precision, Buffer]:
        """Identifier, precisions and output buffer of a new layer."""
        name = op.results[0].name or op.name
        ident = identifier(name, self.taken)
        while any(f"{ident}_{s}" in self.taken for s in suffixes):
            ident = identifier(f"{name}_layer", self.taken)
        self.taken.update(f"{ident}_{s}" for s in suffixes)
        data, constants, accum, ctype = self._precision(op)
        if not data.is_float and any(op.results[0] is v for v in self.module.func.outputs) and not saturating(data):
            data = dataclasses.replace(data, quantization=data.quantization or "AP_TRN", overflow="AP_SAT")
            ctype = ""  # a model output saturates instead of wrapping
        if not ctype:
            ctype = f"{ident}_t"
            self.taken.add(ctype)
            self.layer_types[ctype] = data
        output = Buffer(ident, ctype, data, sample_shape(op.results[0]))
        self.buffers[id(op.results[0])] = output
        return ident, data, constants, accum, output

    def _const(self, name: str, values: np.ndarray, precision: Precision, comment: str) -> ConstArray:
        return ConstArray(name, precision.constant_ctype(), precision.quantize(values), comment)

    def _index(self, name: str, values: np.ndarray, limit: int, comment: str) -> ConstArray:
        return ConstArray(name, index_ctype(limit), np.asarray(values, dtype=np.int64), comment)

    def _next_index(self) -> int:
        return sum(isinstance(step, Layer) for step in self.steps)

    def _add(self, layer: Layer) -> None:
        layer.index = self._next_index()
        self.steps.append(layer)

    def _lower(self, op: Operation) -> None:
        if isinstance(op, ops.Constant):
            return
        handlers: dict[type[Operation], Callable[[Any], None]] = {  # each takes an op of its class
            ops.SparseConv2D: self._conv2d, ops.Conv2D: self._conv2d,
            ops.SparseLinear: self._linear, ops.Linear: self._linear,
            ops.KWinners: self._kwta, ops.ChannelAffine: self._affine, ops.BatchNorm: self._affine,
            ops.Relu: self._relu, ops.MaxPool2D: self._pool, ops.AvgPool2D: self._pool,
            ops.GlobalAvgPool2D: self._global_avgpool, ops.Softmax: self._softmax, ops.LogSoftmax: self._softmax,
            ops.Concat: self._concat, ops.Reshape: self._view, ops.Identity: self._view, ops.Dropout: self._view,
        }
        handler = handlers.get(type(op))
        if handler is None:
            name = op.results[0].name if op.results else ""
            raise CompileError(f"the HLS target has no kernel for {op.name} (%{name})", op_type=op.name)
        handler(op)

    def _view(self, op: ops.Reshape | ops.Identity | ops.Dropout) -> None:
        source = op.input
        if op.results[0].type.shape[:1] != source.type.shape[:1] and None not in (
                op.results[0].type.shape[0], source.type.shape[0]):
            raise CompileError(f"{op.name} %{op.results[0].name} changes the batch axis; the HLS top function "
                               "processes one sample", op_type=op.name)
        if isinstance(op, ops.Reshape) and op.shape[0] not in (-1, source.type.shape[0]):
            raise CompileError(f"{op.name} %{op.results[0].name} reshapes across the batch axis", op_type=op.name)
        base = self._buffer(source, op).storage
        shape = sample_shape(op.results[0])
        self.buffers[id(op.results[0])] = Buffer(base.name, base.ctype, base.precision, shape, base)
        self.steps.append(View(op.results[0].name or "", op.name, base, shape))
