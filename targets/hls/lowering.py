"""From optimised IR to a list of HLS layer calls: one kernel call per compute op.

:class:`Lowering` walks the function in order. Every compute op becomes a :class:`Layer`: the kernel of the
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
import math
import re

import numpy as np

from sparsecc.compiler.cost_model import activation_density
from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Module, Operation, Value
from sparsecc.compiler.ir.layer import Epilogue, Kwta
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.ir.shapes import normalize_axis, window_output_dim
from sparsecc.compiler.ir.types import BSR, CSC, CSR, ELL
from sparsecc.runtime.hls import formats

from .cpp import ConfigStruct, ConstArray, identifier, index_ctype
from .loops import COLUMN, GATHER, PACKED, PACKED_SCATTER, SCATTER, KwtaLoops, LoopModel
from .options import HLSOptions
from .precision import Precision, accumulator_for, boost_precision, saturating

#: Layers a design may have (the instrumentation counters of common.h: instrument::MAX_LAYERS).
MAX_LAYERS = 512


@dataclasses.dataclass
class Buffer:
    """One sample of an IR value as a flat C++ array."""

    name: str
    ctype: str  # the typedef used in declarations (data_t, input_t, or a layer's own type)
    precision: Precision
    shape: tuple[int, ...]
    base: Buffer | None = None  # a view (reshape) shares the storage of its base

    @property
    def storage(self) -> Buffer:
        """The buffer that owns the array (itself, or the base of a view)."""
        return self.base.storage if self.base is not None else self

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def shape_text(self) -> str:
        return "x".join(map(str, self.shape))


@dataclasses.dataclass
class Work:
    """What one layer computes per sample, for the reports (the cycles come from the layer's LoopModel)."""

    macs: float = 0.0  # multiply-accumulates the kernel performs (expected, for data-dependent kernels)
    weight_bits: int = 0  # on-chip bits of the constants (values and indices)


@dataclasses.dataclass
class Layer:
    """One kernel call of the top function."""

    index: int  # position among the layers (0-based)
    name: str  # the IR result name
    ident: str  # C++ base identifier
    op_name: str
    summary: str  # one line: what the layer computes and how
    function: str  # e.g. "sparsecc::conv2d_ell<conv1_config>"
    args: list[str]  # call arguments after the input and output buffers
    inputs: list[Buffer]
    output: Buffer
    precision: Precision
    config: ConfigStruct | None = None
    arrays: list[ConstArray] = dataclasses.field(default_factory=list)
    kernel: str = ""  # dense / weight_sparse / act_sparse / sparse_sparse / complementary... ('' for non-MAC ops)
    weight_format: str = ""  # what the weight header holds
    nonzeros: int = 0  # non-zero weights of the model layer
    stored_values: int = 0  # weight values in the header
    work: Work = dataclasses.field(default_factory=Work)
    lanes: int = 1  # the config's `lanes`: UNROLL factor of the MAC and k-WTA loops
    loops: LoopModel = dataclasses.field(default_factory=LoopModel)
    #: arrays partitioned by the lanes (cyclic / block factor = lanes): their names
    banked_arrays: tuple[str, ...] = ()
    #: on-chip RAM buffers of the layer: (what, elements, bits per element, banks, copies)
    rams: list[tuple[str, int, int, int, int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class View:
    """A shape-only op: its result is another name for an existing buffer."""

    name: str
    op_name: str
    buffer: Buffer
    shape: tuple[int, ...]


@dataclasses.dataclass
class Port:
    name: str  # IR name
    ident: str
    buffer: Buffer  # the buffer the layers read (inputs) or that holds the result (outputs)


@dataclasses.dataclass
class Design:
    """Everything the project writer needs."""

    model: str  # IR module name
    top: str  # C++ top function name
    options: HLSOptions
    inputs: list[Port]
    outputs: list[Port]
    steps: list[Layer | View]
    layer_types: dict[str, Precision]  # per-layer typedefs (name -> precision)

    @property
    def layers(self) -> list[Layer]:
        return [s for s in self.steps if isinstance(s, Layer)]


def _sample_shape(value: Value) -> tuple[int, ...]:
    shape = value.type.shape
    if len(shape) < 1 or any(d is None for d in shape[1:]):
        raise CompileError(f"value %{value.name} has shape {list(shape)}: the HLS target needs a batch axis "
                           "first and static sizes elsewhere")
    return tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]


def _constant(value: Value | None, what: str, op: Operation) -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value.owner, ops.Constant):
        raise CompileError(f"the {what} of {op.name} %{op.results[0].name} must be a constant for the HLS target "
                           f"(weights live in on-chip ROMs)", op_type=op.name)
    return np.asarray(value.owner.value)


def _per_channel(array: np.ndarray | None, channels: int, what: str, op: Operation) -> np.ndarray | None:
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


def _key_bits(data: Precision, boost: ConstArray | None) -> int:
    """Bits of the k-WTA order key: 32 for float, the (product) width for ap_fixed."""
    if data.is_float:
        return 32
    return data.bits + (_element_bits(boost, data) if boost is not None else 0)


class Lowering:
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

    # -- entry ------------------------------------------------------------------------------------------------
    def run(self) -> Design:
        func = self.module.func
        top = identifier(self.module.name or "model", self.taken)
        inputs = []
        for arg in func.args:
            ident = identifier(arg.name or "input", self.taken)
            # AXI-stream ports are read into an array; array ports are read by the layers directly
            name = identifier(f"{ident}_buf", self.taken) if self.options.interface == "axis" else ident
            buffer = Buffer(name, "input_t", self.options.precision, _sample_shape(arg))
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

    # -- helpers ----------------------------------------------------------------------------------------------
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
        output = Buffer(ident, ctype, data, _sample_shape(op.results[0]))
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

    # -- dispatch ---------------------------------------------------------------------------------------------
    def _lower(self, op: Operation) -> None:
        if isinstance(op, ops.Constant):
            return
        handler = {
            ops.SparseConv2D: self._conv2d, ops.Conv2D: self._conv2d,
            ops.SparseLinear: self._linear, ops.Linear: self._linear,
            ops.KWinners: self._kwta, ops.ChannelAffine: self._affine, ops.BatchNorm: self._affine,
            ops.Relu: self._relu, ops.MaxPool2D: self._pool, ops.AvgPool2D: self._pool,
            ops.GlobalAvgPool2D: self._global_avgpool, ops.Softmax: self._softmax, ops.LogSoftmax: self._softmax,
            ops.Concat: self._concat, ops.Reshape: self._view, ops.Identity: self._view, ops.Dropout: self._view,
        }.get(type(op))
        if handler is None:
            name = op.results[0].name if op.results else ""
            raise CompileError(f"the HLS target has no kernel for {op.name} (%{name})", op_type=op.name)
        handler(op)

    # -- views ------------------------------------------------------------------------------------------------
    def _view(self, op: Operation) -> None:
        source = op.operand_values[0]
        if op.results[0].type.shape[:1] != source.type.shape[:1] and None not in (
                op.results[0].type.shape[0], source.type.shape[0]):
            raise CompileError(f"{op.name} %{op.results[0].name} changes the batch axis; the HLS top function "
                               "processes one sample", op_type=op.name)
        if isinstance(op, ops.Reshape) and op.attr("shape")[0] not in (-1, source.type.shape[0]):
            raise CompileError(f"{op.name} %{op.results[0].name} reshapes across the batch axis", op_type=op.name)
        base = self._buffer(source, op).storage
        shape = _sample_shape(op.results[0])
        self.buffers[id(op.results[0])] = Buffer(base.name, base.ctype, base.precision, shape, base)
        self.steps.append(View(op.results[0].name or "", op.name, base, shape))

    # -- conv2d / linear --------------------------------------------------------------------------------------
    def _kernel_choice(self, op: Operation) -> tuple[str, str]:
        """(kernel kind of the IR, storage used): storage in dense / ell / csc / complementary."""
        weight = op.operand("weight")
        assert weight is not None
        encoding = weight.type.encoding
        kernel = op.attr("kernel") if isinstance(op, ops.SparseConv2D | ops.SparseLinear) else "dense"
        if self.dense:
            return "dense", "dense"
        compressed = isinstance(encoding, CSR | CSC | ELL | BSR)
        if compressed and kernel == "sparse_sparse" and (op.results[0].name or "") in self.gather:
            return "weight_sparse", "ell"
        if kernel == "auto":
            kernel = "weight_sparse" if compressed else "dense"
        if kernel in ("dense", "act_sparse"):
            return kernel, "dense"
        if self.options.packing == "complementary":
            return kernel, "complementary"
        if kernel == "weight_sparse" and not isinstance(encoding, CSC):
            return kernel, "ell"
        return kernel, "csc"

    def _packing(self, kernel: str, storage: str, matrix: np.ndarray, encoding: object
                 ) -> tuple[str, formats.ComplementaryWeights | None, str]:
        """Complementary packing where it pays (at most half as many groups as units); otherwise the plain
        format (ELL / CSC) with a note saying why. Returns (storage, packing, note)."""
        if storage != "complementary":
            return storage, None, ""
        rows = matrix.shape[0]
        packed = formats.pack_complementary(matrix, self.options.pack_size, max_groups=max(1, rows // 2))
        if packed is not None:
            return storage, packed, ""
        plain = "ell" if kernel == "weight_sparse" and not isinstance(encoding, CSC) else "csc"
        return plain, None, (f"complementary packing does not pay here (more than {max(1, rows // 2)} groups for "
                             f"{rows} units): stored as {plain.upper()}")

    def _weight_arrays(self, ident: str, matrix: np.ndarray, storage: str, constants: Precision,
                       encoding_name: str, what: str, lanes: int, packed: formats.ComplementaryWeights | None
                       ) -> tuple[list[ConstArray], list[str], dict[str, int], str, int]:
        """(arrays, call arguments, config members, format description, stored values) of a weight."""
        rows, cols = matrix.shape
        nnz = int(np.count_nonzero(matrix))
        converted = {
            ("ell", "csr"): " (the pass chose CSR: its rows are stored as ELL rows, padded to the widest)",
            ("ell", "bsr"): " (the pass chose BSR: only the true non-zeros of its blocks are stored, as ELL rows)",
            ("csc", "csr"): " (the pass chose CSR: converted to CSC for the scatter kernel)",
            ("csc", "ell"): " (the pass chose ELL: converted to CSC for the scatter kernel)",
            ("csc", "bsr"): " (the pass chose BSR: its true non-zeros are stored as CSC)",
        }.get((storage, encoding_name), "")
        if storage == "dense":
            note = f"{what}: dense weights w[{rows}][{cols}] ({nnz} non-zeros), one row per output unit"
            arrays = [self._const(f"{ident}_w", matrix, constants, note)]
            return arrays, [f"{ident}_w"], {}, f"dense {rows}x{cols}", rows * cols
        if storage == "ell":
            ell = formats.to_ell(matrix)
            arrays = [
                self._index(f"{ident}_idx", ell.idx, cols - 1,
                            f"{what}: ELL column indices idx[{rows}][{ell.fan_in}] (column = c*KH*KW + ky*KW + kx)"),
                self._const(f"{ident}_val", ell.val, constants,
                            f"{what}: ELL values val[{rows}][{ell.fan_in}]: the {nnz} non-zeros{converted}"),
            ]
            description = f"ELL fan_in={ell.fan_in}{converted}"
            return arrays, [f"{ident}_idx", f"{ident}_val"], {"fan_in": ell.fan_in}, description, int(ell.val.size)
        if storage == "csc":
            csc = formats.to_banked_csc(matrix, lanes)
            banked = f" banked for {lanes} lanes ({csc.slots} slots of {lanes})" if lanes > 1 else ""
            arrays = [
                self._index(f"{ident}_col_ptr", csc.col_ptr, max(csc.slots, 1),
                            f"{what}: CSC column pointers col_ptr[{cols + 1}]" + (" (in slots)" if banked else "")),
                self._index(f"{ident}_row_idx", csc.row_idx, rows,
                            f"{what}: CSC row (output unit) of each entry, row_idx[{csc.nnz}]"
                            + (f" ({rows}: empty entry)" if banked else "")),
                self._const(f"{ident}_val", csc.val, constants,
                            f"{what}: CSC values val[{csc.nnz}]: the {nnz} non-zeros, column by column{converted}"
                            f"{banked}"),
            ]
            description = f"CSC nnz={csc.nnz}{converted}{banked}"
            return arrays, [f"{ident}_col_ptr", f"{ident}_row_idx", f"{ident}_val"], {"nnz": csc.nnz}, description, \
                csc.nnz
        assert packed is not None
        arrays = [
            self._const(f"{ident}_packed_val", packed.packed_val, constants,
                        f"{what}: complementary packing, {rows} units in {packed.n_groups} groups of at most "
                        f"{packed.pack_size}: packed_val[{packed.n_groups}][{cols}] overlays each group's weights"),
            self._index(f"{ident}_packed_slot", packed.packed_slot, max(packed.pack_size - 1, 0),
                        f"{what}: slot (unit within its group) owning each packed column"),
            self._index(f"{ident}_group_rows", packed.group_rows, rows,
                        f"{what}: output unit of each slot ({rows} marks an unused slot)"),
        ]
        members = {"n_groups": packed.n_groups, "pack_size": packed.pack_size}
        return arrays, [f"{ident}_packed_val", f"{ident}_packed_slot", f"{ident}_group_rows"], members, \
            f"complementary G={packed.n_groups} P={packed.pack_size}", int(packed.packed_val.size)

    def _epilogue(self, op: Operation, config: ConfigStruct, channels: int, pre_pool: tuple[int, int],
                  data: Precision, constants: Precision, index: int, lanes: int
                  ) -> tuple[list[str], Kwta | None, tuple[int, int, int, int] | None, bool, bool]:
        """Fill the epilogue members; returns (descriptions, k-WTA, pool window, pool_before_kwta, relu)."""
        epilogue = Epilogue.of_op(op)
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
                             f"{', boosted' if op.operand('boost') is not None else ''})")
            elif isinstance(stage, MaxPoolStage):
                pool = self._pool_window(op, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, pre_pool)
                notes.append(f"max-pool {stage.kernel[0]}x{stage.kernel[1]}"
                             + (f"/{stage.strides[0]}x{stage.strides[1]}" if tuple(stage.strides) != tuple(
                                 stage.kernel) else ""))
        if kwta is not None:
            boost = op.operand("boost")
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
                factors = _constant(boost, "boost", op)
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

    def _conv2d(self, op: Operation) -> None:
        x = op.operand("input")
        assert x is not None
        source = self._buffer(x, op)
        if op.attr("groups") != 1 or tuple(op.attr("dilations")) != (1, 1):
            raise CompileError(f"{op.name} %{op.results[0].name}: grouped or dilated convolutions are not supported "
                               "by the HLS kernels", op_type=op.name)
        weight = _constant(op.operand("weight"), "weight", op)
        assert weight is not None
        o, c, kh, kw = weight.shape
        _, h, w = source.shape
        pads = tuple(op.attr("pads"))
        strides = tuple(op.attr("strides"))
        oh = (h + pads[0] + pads[2] - kh) // strides[0] + 1
        ow = (w + pads[1] + pads[3] - kw) // strides[1] + 1
        matrix = formats.weight_matrix(weight.astype(np.float32))
        encoding = op.operand("weight").type.encoding  # type: ignore[union-attr]
        kernel, storage = self._kernel_choice(op)
        storage, packed, packing_note = self._packing(kernel, storage, matrix, encoding)
        function = "conv2d_" + _kernel_function(kernel, storage)
        index = self._next_index()
        lanes = self._layer_lanes(op, storage)
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "w", "idx", "val", "bias",
                                                                           "boost", "col_ptr", "row_idx"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::conv2d_defaults")
        config.constant("layer", index)
        config.constant("lanes", lanes, note="MAC lanes: UNROLL factor of the MAC loop, partition factor of its "
                                             "arrays")
        config.constant(["in_channels", "in_height", "in_width"], [c, h, w])
        config.constant(["out_channels", "out_height", "out_width"], [o, oh, ow])
        config.constant(["kernel_h", "kernel_w"], [kh, kw])
        if strides != (1, 1):
            config.constant(["stride_h", "stride_w"], list(strides))
        if any(pads):
            config.constant(["pad_top", "pad_left", "pad_bottom", "pad_right"], list(pads))
        what = f"{op.results[0].name}"
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", what, lanes, packed)
        if packing_note:
            description += f"; {packing_note}"
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, pool, pool_first, relu = self._epilogue(op, config, o, (oh, ow), data, constants, index, lanes)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias, *self._epilogue_args(config, o, boost)]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {source.shape_text()} -> {o}x{oh}x{ow}: {kh}x{kw} conv"
                   + (f" stride {strides[0]}x{strides[1]}" if strides != (1, 1) else "")
                   + (f" pad {list(pads)}" if any(pads) else "")
                   + f", {kernel.replace('_', '-')} kernel, weights {description} ({nnz} non-zeros, density "
                   f"{nnz / matrix.size:.3g})" + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)} -> {output.shape_text()}" if notes else "")
                   + f"; {lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
        layer.lanes = lanes
        kind = _mac_kind(function)
        hits = tuple(_tap_hits(ky, kx, (h, w), (oh, ow), strides, pads) for ky in range(kh) for kx in range(kw))
        layer.loops = LoopModel(kind=kind, reduce=members.get("fan_in", c * kh * kw), outputs=o * oh * ow, rows=o,
                                inputs=source.size, taps=kh * kw, tap_hits=hits,
                                density=in_density if kind != GATHER else 1.0,
                                support=matrix != 0 if kind == SCATTER else None,
                                groups=members.get("n_groups", 0), pack_size=members.get("pack_size", 0),
                                in_channels=c, scan=kind in (SCATTER, COLUMN, PACKED_SCATTER))
        if kind == COLUMN:
            layer.loops.support = np.ones((o, c * kh * kw), dtype=bool)
        self._epilogue_loops(layer, (o, oh, ow), kwta, pool, pool_first, relu)
        dense_macs = o * oh * ow * c * kh * kw
        if storage == "dense" and kernel == "dense":
            macs: float = dense_macs
        elif storage == "ell":
            macs = o * oh * ow * members["fan_in"]
        elif storage == "complementary":
            macs = members["n_groups"] * oh * ow * c * kh * kw * (in_density if kernel == "sparse_sparse" else 1.0)
        elif storage == "dense":  # act_sparse
            macs = dense_macs * in_density
        else:  # csc scatter
            macs = dense_macs * (nnz / matrix.size) * in_density
        self._fill_work(layer, macs, kind, source, o * oh * ow, accum)
        self._add(layer)

    def _linear(self, op: Operation) -> None:
        x = op.operand("input")
        assert x is not None
        source = self._buffer(x, op)
        if len(source.shape) != 1:
            raise CompileError(f"{op.name} %{op.results[0].name}: input must be (batch, features)", op_type=op.name)
        weight = _constant(op.operand("weight"), "weight", op)
        assert weight is not None
        o, i = weight.shape
        matrix = np.ascontiguousarray(weight.astype(np.float32))
        encoding = op.operand("weight").type.encoding  # type: ignore[union-attr]
        kernel, storage = self._kernel_choice(op)
        storage, packed, packing_note = self._packing(kernel, storage, matrix, encoding)
        function = "linear_" + _kernel_function(kernel, storage)
        index = self._next_index()
        lanes = self._layer_lanes(op, storage)
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "w", "idx", "val", "bias",
                                                                           "boost", "col_ptr", "row_idx"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::linear_defaults")
        config.constant("layer", index)
        config.constant("lanes", lanes, note="MAC lanes: UNROLL factor of the MAC loop, partition factor of its "
                                             "arrays")
        config.constant(["in_features", "out_features"], [i, o])
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", op.results[0].name or "",
            lanes, packed)
        if packing_note:
            description += f"; {packing_note}"
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, _, _, relu = self._epilogue(op, config, o, (1, 1), data, constants, index, lanes)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias, *self._epilogue_args(config, o, boost)]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {i} -> {o}: {kernel.replace('_', '-')} kernel, weights {description} ({nnz} "
                   f"non-zeros, density {nnz / matrix.size:.3g})"
                   + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)}" if notes else "")
                   + f"; {lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
        layer.lanes = lanes
        kind = _mac_kind(function)
        layer.loops = LoopModel(kind=kind, reduce=members.get("fan_in", i), outputs=o, rows=o, inputs=i,
                                density=in_density if kind != GATHER else 1.0,
                                support=matrix != 0 if kind == SCATTER else None,
                                groups=members.get("n_groups", 0), pack_size=members.get("pack_size", 0),
                                scan=kind in (SCATTER, COLUMN, PACKED_SCATTER),
                                replicate=function != "linear_dense")
        if kind == COLUMN:
            layer.loops.support = np.ones((o, i), dtype=bool)
        self._epilogue_loops(layer, (o, 1, 1), kwta, None, False, relu)
        dense_macs = o * i
        macs = {"dense": dense_macs * (in_density if kernel == "act_sparse" else 1.0),
                "ell": o * members.get("fan_in", 0),
                "csc": dense_macs * (nnz / matrix.size) * in_density,
                "complementary": members.get("n_groups", 0) * i * (in_density if kernel == "sparse_sparse" else 1.0),
                }[storage]
        self._fill_work(layer, macs, kind, source, o, accum)
        self._add(layer)

    def _layer_lanes(self, op: Operation, storage: str) -> int:
        lanes = self.lanes.get(op.results[0].name or "", 1)
        return 1 if storage == "complementary" else lanes

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
            pooled = channels * _pooled(height, pool[0], pool[2]) * _pooled(width, pool[1], pool[3])
            loops.pool, loops.pool_entries = _maxpool_cycles(n, pooled, pool), 1
            if pool_first and kwta is not None:
                kwta_size = pooled
        if kwta is not None:
            groups = (kwta_size // channels) if kwta.local else 1
            boost = next((a for a in layer.arrays if a.name.endswith("_boost")), None)
            loops.kwta = KwtaLoops(groups, kwta_size // groups, _key_bits(layer.precision, boost), kwta.local,
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

    def _fill_work(self, layer: Layer, macs: float, kind: str, source: Buffer, acc_size: int,
                   accum: Precision) -> None:
        """MACs (for the report), constants and buffers of a conv / linear layer."""
        layer.work = Work(macs=macs, weight_bits=sum(a.count * _element_bits(a, layer.precision) for a in layer.arrays))
        lanes = layer.lanes
        layer.banked_arrays = tuple(a.name for a in layer.arrays if a.name.endswith(
            ("_w", "_idx", "_val", "_row_idx")))
        acc_banks = lanes if kind in (SCATTER, COLUMN) else 1
        layer.rams.append(("accumulator", acc_size, accum.bits, acc_banks, 2))
        if kind == GATHER and lanes > 2 and layer.loops.replicate:
            layer.rams.append(("input replicas", source.size, source.precision.bits, 1, (lanes + 1) // 2))

    def _bias_boost(self, op: Operation, ident: str, units: int, constants: Precision,
                    arrays: list[ConstArray]) -> tuple[str, str | None]:
        bias = _constant(op.operand("bias"), "bias", op)
        if bias is None:
            bias = np.zeros(units, dtype=np.float32)
            note = "bias: the model has none (zeros)"
        else:
            note = f"bias[{units}]"
        arrays.append(self._const(f"{ident}_bias", bias.reshape(-1), constants, f"{op.results[0].name}: {note}"))
        fused = isinstance(op, ops.SparseConv2D | ops.SparseLinear)
        boost = _per_channel(_constant(op.operand("boost"), "boost", op), units, "the k-WTA boost", op) if fused \
            else None
        if boost is None:
            return f"{ident}_bias", None
        arrays.append(self._boost_array(f"{ident}_boost", boost, constants, op))
        return f"{ident}_bias", f"{ident}_boost"

    def _boost_array(self, name: str, boost: np.ndarray, constants: Precision, op: Operation) -> ConstArray:
        precision = boost_precision(constants, boost)
        return self._const(name, boost, precision, f"{op.results[0].name}: k-WTA boost factor per channel "
                                                   f"(selection only), {precision}")

    # -- k-WTA, affine, element-wise ---------------------------------------------------------------------------
    def _chw(self, buffer: Buffer) -> tuple[int, int, int]:
        if len(buffer.shape) == 3:
            return buffer.shape  # type: ignore[return-value]
        if len(buffer.shape) == 1:
            return buffer.shape[0], 1, 1
        raise CompileError(f"buffer {buffer.name} of shape {list(buffer.shape)} is neither NCHW nor (N, features)")

    def _kwta(self, op: Operation) -> None:
        x = op.operand("input")
        assert x is not None
        source = self._buffer(x, op)
        c, h, w = self._chw(source)
        mode = self._kwta_mode(op, Kwta.of_op(op))
        index = self._next_index()
        lanes = 1 if mode.local else self.lanes.get(op.results[0].name or "", 1)
        ident, data, constants, _, output = self._layer(op, suffixes=("config", "boost"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::kwta_defaults")
        config.constant("layer", index)
        config.constant("lanes", lanes, note="values counted / selected per cycle (global k-WTA)")
        config.constant(["channels", "height", "width"], [c, h, w])
        config.constant("k", op.attr("k"))
        if mode.local:
            config.constant("local", True, "bool")
        if mode.break_ties:
            config.constant("break_ties", True, "bool")
        boost = _per_channel(_constant(op.operand("boost"), "boost", op), c, "the k-WTA boost", op)
        arrays = []
        if boost is not None:
            config.constant("boost", True, "bool", "select on x * boost[c]")
            arrays.append(self._boost_array(f"{ident}_boost", boost, constants, op))
            config.typedef(arrays[0].ctype, "boost_t")
            args = [f"{ident}_boost"]
        else:
            args = [f"sparsecc::no_values<{ident}_config::boost_t, {c}>::values"]
        config.constant("radix_bits", self.options.radix_bits)
        size = c * h * w
        groups = h * w if mode.local else 1
        summary = (f"{op.name} {source.shape_text()}: k-WTA k={op.attr('k')} of {size // groups} "
                   f"({'local: over C at each pixel' if mode.local else 'global'}"
                   f"{', ties broken' if mode.break_ties else ''}{', boosted' if boost is not None else ''}); "
                   f"{lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::kwta<{config.name}>", args, [source], output, data, config, arrays)
        layer.lanes = lanes
        layer.loops = LoopModel(kwta=KwtaLoops(groups, size // groups, _key_bits(data, arrays[0] if arrays else None),
                                               mode.local, self.options.radix_bits))
        layer.work = Work(weight_bits=sum(a.count * _element_bits(a, constants) for a in arrays))
        layer.banked_arrays = ()
        self._add(layer)

    def _affine(self, op: Operation) -> None:
        x = op.operand("input")
        assert x is not None
        source = self._buffer(x, op)
        c, h, w = self._chw(source)
        if isinstance(op, ops.BatchNorm):
            gamma, beta, mean, var = (_constant(op.operand(n), n, op) for n in ("scale", "bias", "mean", "var"))
            scale = gamma / np.sqrt(var + np.float32(op.attr("epsilon")))  # type: ignore[operator]
            shift = beta - mean * scale  # type: ignore[operator]
        else:
            scale = _constant(op.operand("scale"), "scale", op)
            shift = _constant(op.operand("shift"), "shift", op)
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

    def _relu(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        self._simple(op, f"sparsecc::relu<{source.size}, ID>", f"{op.name} {source.shape_text()}: max(x, 0)",
                     LoopModel(pointwise=source.size, pointwise_entries=1))

    def _pool(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        c, h, w = self._chw(source)
        if len(source.shape) != 3:
            raise CompileError(f"{op.name} needs an NCHW input", op_type=op.name)
        window = self._pool_window(op, op.attr("kernel"), op.attr("strides"), op.attr("pads"), op.attr("ceil_mode"),
                                   (h, w))
        config = ConfigStruct("", f"sparsecc::pool2d<{', '.join(map(str, window))}>")
        config.constant(["channels", "in_height", "in_width"], [c, h, w])
        average = isinstance(op, ops.AvgPool2D)
        if average:
            _, _, accum, _ = self._precision(op)
            config.typedef(accum.ctype(), "accum_t")
        kind = "avgpool2d" if average else "maxpool2d"
        out = _sample_shape(op.results[0])
        summary = (f"{op.name} {source.shape_text()} -> {'x'.join(map(str, out))}: "
                   f"{'average' if average else 'max'} pooling {window[0]}x{window[1]} stride {window[2]}x{window[3]}")
        pooled = math.prod(out)
        cycles = pooled * math.ceil(window[0] * window[1] / 2) if average else _maxpool_cycles(c * h * w, pooled,
                                                                                                window)
        self._simple(op, f"sparsecc::{kind}<CONFIG>", summary, LoopModel(pool=cycles, pool_entries=1), config)

    def _global_avgpool(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        c, h, w = self._chw(source)
        config = ConfigStruct("", "")
        config.constant(["channels", "height", "width"], [c, h, w])
        _, _, accum, _ = self._precision(op)
        config.typedef(accum.ctype(), "accum_t")
        self._simple(op, "sparsecc::global_avgpool<CONFIG>", f"{op.name} {source.shape_text()} -> {c}: mean over HxW",
                     LoopModel(pool=c * h * w, pool_entries=c), config)

    def _softmax(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        rank = len(source.shape) + 1
        axis = normalize_axis(op.attr("axis"), rank)
        if axis != 1 or any(d != 1 for d in source.shape[1:]):
            raise CompileError(f"{op.name} over axis {op.attr('axis')} of a rank-{rank} tensor: the HLS kernels take "
                               "(log-)softmax over the features of (batch, features)", op_type=op.name)
        kind = "log_softmax" if isinstance(op, ops.LogSoftmax) else "softmax"
        n = source.size
        self._simple(op, f"sparsecc::{kind}<{n}, ID>", f"{op.name} over {n} values (float math)",
                     LoopModel(pointwise=3 * n - 1, pointwise_entries=3))

    def _concat(self, op: Operation) -> None:
        values = op.operand_group("inputs")
        sources = [self._buffer(v, op) for v in values]
        rank = op.results[0].type.rank
        if normalize_axis(op.attr("axis"), rank) != 1:
            raise CompileError(f"{op.name} along axis {op.attr('axis')}: the HLS target concatenates channels "
                               "(axis 1) only", op_type=op.name)
        if len(sources) != 2:
            raise CompileError(f"{op.name} of {len(sources)} inputs: the HLS kernel concatenates two", op_type=op.name)
        a, b = sources
        summary = f"{op.name} {a.shape_text()} ++ {b.shape_text()} along channels"
        self._simple(op, f"sparsecc::concat_channels<{a.size}, {b.size}, ID>", summary,
                     LoopModel(pointwise=a.size + b.size, pointwise_entries=2), inputs=sources)


def _kernel_function(kernel: str, storage: str) -> str:
    """The kernel name suffix for a kernel kind and the weight storage used."""
    if storage == "dense":
        return "act_sparse" if kernel == "act_sparse" else "dense"
    if storage == "complementary":
        return "complementary_sparse" if kernel == "sparse_sparse" else "complementary"
    return {"ell": "ell", "csc": "sparse_sparse"}[storage]


def _mac_kind(function: str) -> str:
    """The MAC loop kind (loops.py) of a conv2d_* / linear_* kernel."""
    suffix = function.split("_", 1)[1]
    return {"dense": GATHER, "ell": GATHER, "sparse_sparse": SCATTER, "act_sparse": COLUMN,
            "complementary": PACKED, "complementary_sparse": PACKED_SCATTER}[suffix]


def _tap_hits(ky: int, kx: int, size: tuple[int, int], out: tuple[int, int], strides: tuple[int, ...],
              pads: tuple[int, ...]) -> int:
    """Output pixels whose input under tap (ky, kx) lies inside the image (not in the zero padding)."""
    rows = sum(0 <= oy * strides[0] + ky - pads[0] < size[0] for oy in range(out[0]))
    cols = sum(0 <= ox * strides[1] + kx - pads[1] < size[1] for ox in range(out[1]))
    return rows * cols


def _pooled(size: int, kernel: int, stride: int) -> int:
    return 0 if size < kernel else (size - kernel) // stride + 1


def _maxpool_cycles(inputs: int, outputs: int, window: tuple[int, int, int, int]) -> int:
    """Cycles of maxpool_impl (pool.h): one pass over the input for windows that do not overlap, else
    ceil(KH*KW / 2) per output (reads of a dual-port buffer)."""
    kh, kw, sh, sw = window
    if sh >= kh and sw >= kw:
        return inputs
    return outputs * math.ceil(kh * kw / 2)


def _element_bits(array: ConstArray, constants: Precision) -> int:
    """Bits of one stored element: the value type's width for values, the index type's for indices."""
    if array.ctype.startswith("uint"):
        return int(array.ctype[4:-2])
    match = re.search(r"ap_u?fixed<(\d+)", array.ctype)
    if match:
        return int(match.group(1))
    return 32 if array.ctype == "float" else constants.bits
