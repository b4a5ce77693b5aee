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

import numpy as np

from sparsecc.compiler.cost_model import activation_density
from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Module, Operation, Value
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.ir.shapes import normalize_axis, window_output_dim
from sparsecc.compiler.ir.types import BSR, CSC, CSR, ELL
from sparsecc.runtime.hls import formats

from .cpp import ConfigStruct, ConstArray, identifier, index_ctype
from .options import HLSOptions
from .precision import Precision, accumulator_for


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
    """What one layer does per sample, for the estimates (see estimate.py)."""

    macs: float = 0.0  # multiply-accumulates the kernel performs (expected, for data-dependent kernels)
    scan: int = 0  # input elements scanned to find the active ones (sparse-input kernels)
    elements: int = 0  # elements through the pointwise loops (epilogue, element-wise ops, copies)
    kwta_groups: int = 0
    kwta_group_size: int = 0
    kwta_key_bits: int = 0
    pool_reads: int = 0  # input elements read by pooling windows
    weight_bits: int = 0  # on-chip bits of the constants (values and indices)
    buffer_bits: int = 0  # bits of the output and accumulator buffers
    multiplier_bits: int = 0  # operand width of the MAC multiplier (0: no multiplier)


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
    dense_work: Work = dataclasses.field(default_factory=Work)


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


def _key_bits(data: Precision, boost: Precision | None) -> int:
    """Bits of the k-WTA order key: 32 for float, the (product) width for ap_fixed."""
    if data.is_float:
        return 32
    return data.bits + (boost.bits if boost is not None else 0)


@dataclasses.dataclass
class _Kwta:
    k: int
    local: bool
    break_ties: bool


class Lowering:
    """Lower one optimised module (see module docstring)."""

    def __init__(self, module: Module, options: HLSOptions) -> None:
        self.module = module
        self.options = options
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

    def _add(self, layer: Layer) -> None:
        layer.index = sum(isinstance(step, Layer) for step in self.steps)
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
        compressed = isinstance(encoding, CSR | CSC | ELL | BSR)
        if kernel == "auto":
            kernel = "weight_sparse" if compressed else "dense"
        if kernel in ("dense", "act_sparse"):
            return kernel, "dense"
        if self.options.packing == "complementary":
            return kernel, "complementary"
        if kernel == "weight_sparse" and not isinstance(encoding, CSC):
            return kernel, "ell"
        return kernel, "csc"

    def _weight_arrays(self, ident: str, matrix: np.ndarray, storage: str, constants: Precision,
                       encoding_name: str, what: str) -> tuple[list[ConstArray], list[str], dict[str, int], str, int]:
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
            csc = formats.to_csc(matrix)
            arrays = [
                self._index(f"{ident}_col_ptr", csc.col_ptr, max(csc.nnz, 1),
                            f"{what}: CSC column pointers col_ptr[{cols + 1}]"),
                self._index(f"{ident}_row_idx", csc.row_idx, rows - 1,
                            f"{what}: CSC row (output unit) of each non-zero, row_idx[{csc.nnz}]"),
                self._const(f"{ident}_val", csc.val, constants,
                            f"{what}: CSC values val[{csc.nnz}]: the {nnz} non-zeros, column by column{converted}"),
            ]
            description = f"CSC nnz={csc.nnz}{converted}"
            return arrays, [f"{ident}_col_ptr", f"{ident}_row_idx", f"{ident}_val"], {"nnz": csc.nnz}, description, \
                csc.nnz
        packed = formats.pack_complementary(matrix, self.options.pack_size)
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
                  data: Precision, constants: Precision
                  ) -> tuple[list[str], _Kwta | None, tuple[int, int, int, int] | None, bool, bool]:
        """Fill the epilogue members; returns (descriptions, k-WTA, pool window, pool_before_kwta, relu)."""
        stages = op.attr("epilogue") if isinstance(op, ops.SparseConv2D | ops.SparseLinear) else ()
        kinds = [type(s) for s in stages]
        notes: list[str] = []
        kwta: _Kwta | None = None
        pool: tuple[int, int, int, int] | None = None
        relu = ReluStage in kinds
        pool_first = False
        for stage in stages:
            if isinstance(stage, ReluStage):
                config.constant("relu", True, "bool")
                notes.append("ReLU")
            elif isinstance(stage, KWTAStage):
                kwta = self._kwta_mode(op, stage.k, stage.over, stage.ties, rank=4 if isinstance(
                    op, ops.SparseConv2D) else 2)
                notes.append(f"k-WTA(k={stage.k}, {'local' if kwta.local else 'global'}"
                             f"{', ties broken' if kwta.break_ties else ''}"
                             f"{', boosted' if op.operand('boost') is not None else ''})")
            elif isinstance(stage, MaxPoolStage):
                pool = self._pool_window(op, stage.kernel, stage.strides, stage.pads, stage.ceil_mode, pre_pool)
                pool_first = KWTAStage not in kinds[: kinds.index(MaxPoolStage)]
                notes.append(f"max-pool {stage.kernel[0]}x{stage.kernel[1]}"
                             + (f"/{stage.strides[0]}x{stage.strides[1]}" if tuple(stage.strides) != tuple(
                                 stage.kernel) else ""))
        if kwta is not None:
            boost = op.operand("boost")
            nested = ConfigStruct("kwta_config", "sparsecc::kwta_defaults")
            nested.constant("k", kwta.k)
            if kwta.local:
                nested.constant("local", True, "bool")
            if kwta.break_ties:
                nested.constant("break_ties", True, "bool")
            if boost is not None:
                nested.constant("boost", True, "bool", "select on x * boost[c]")
                nested.typedef(constants.constant_ctype(), "boost_t")
            nested.constant("radix_bits", self.options.radix_bits)
            config.nested.append(nested)
            if relu and kinds.index(ReluStage) > kinds.index(KWTAStage):
                config.constant("relu_after_kwta", True, "bool", "ReLU on the winners")
        if pool is not None:
            config.typedef(f"sparsecc::pool2d<{', '.join(map(str, pool))}>", "pool_config")
            if kwta is not None and pool_first:
                config.constant("pool_before_kwta", True, "bool", "k-WTA selects among the pooled values")
        return notes, kwta, pool, pool_first and kwta is not None, relu

    def _kwta_mode(self, op: Operation, k: int, over: tuple[int, ...], ties: str, rank: int) -> _Kwta:
        if rank == 4 and tuple(over) == (1, 2, 3):
            local = False
        elif rank == 4 and tuple(over) == (1,):
            local = True
        elif rank == 2 and tuple(over) == (1,):
            local = False
        else:
            raise CompileError(f"k-WTA over axes {list(over)} of a rank-{rank} tensor: the HLS k-WTA unit selects "
                               "over C*H*W (global), over C at each pixel (local) or over the features",
                               op_type=op.name)
        return _Kwta(k, local, ties == "break")

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
        kernel, storage = self._kernel_choice(op)
        function = "conv2d_" + _kernel_function(kernel, storage)
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "w", "idx", "val", "bias",
                                                                           "boost", "col_ptr", "row_idx"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::conv2d_defaults")
        config.constant(["in_channels", "in_height", "in_width"], [c, h, w])
        config.constant(["out_channels", "out_height", "out_width"], [o, oh, ow])
        config.constant(["kernel_h", "kernel_w"], [kh, kw])
        if strides != (1, 1):
            config.constant(["stride_h", "stride_w"], list(strides))
        if any(pads):
            config.constant(["pad_top", "pad_left", "pad_bottom", "pad_right"], list(pads))
        matrix = formats.weight_matrix(weight.astype(np.float32))
        encoding = op.operand("weight").type.encoding  # type: ignore[union-attr]
        what = f"{op.results[0].name}"
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", what)
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, pool, pool_first, _ = self._epilogue(op, config, o, (oh, ow), data, constants)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias]
        if boost:
            args += ["nullptr", "nullptr", boost]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {source.shape_text()} -> {o}x{oh}x{ow}: {kh}x{kw} conv"
                   + (f" stride {strides[0]}x{strides[1]}" if strides != (1, 1) else "")
                   + (f" pad {list(pads)}" if any(pads) else "")
                   + f", {kernel.replace('_', '-')} kernel, weights {description} ({nnz} non-zeros, density "
                   f"{nnz / matrix.size:.3g})" + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)} -> {output.shape_text()}" if notes else ""))
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
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
        sparse_input = function.endswith(("sparse_sparse", "act_sparse", "complementary_sparse"))
        self._fill_work(layer, macs, dense_macs, sparse_input, source.size, o * oh * ow, kwta, pool, pool_first,
                        (o, oh, ow), data, constants, accum, boost is not None, matrix, arrays)
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
        kernel, storage = self._kernel_choice(op)
        function = "linear_" + _kernel_function(kernel, storage)
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "w", "idx", "val", "bias",
                                                                           "boost", "col_ptr", "row_idx"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::linear_defaults")
        config.constant(["in_features", "out_features"], [i, o])
        matrix = np.ascontiguousarray(weight.astype(np.float32))
        encoding = op.operand("weight").type.encoding  # type: ignore[union-attr]
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", op.results[0].name or "")
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, _, _, _ = self._epilogue(op, config, o, (1, 1), data, constants)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias]
        if boost:
            args += ["nullptr", "nullptr", boost]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {i} -> {o}: {kernel.replace('_', '-')} kernel, weights {description} ({nnz} "
                   f"non-zeros, density {nnz / matrix.size:.3g})"
                   + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)}" if notes else ""))
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
        dense_macs = o * i
        macs = {"dense": dense_macs * (in_density if kernel == "act_sparse" else 1.0),
                "ell": o * members.get("fan_in", 0),
                "csc": dense_macs * (nnz / matrix.size) * in_density,
                "complementary": members.get("n_groups", 0) * i * (in_density if kernel == "sparse_sparse" else 1.0),
                }[storage]
        sparse_input = function.endswith(("sparse_sparse", "act_sparse", "complementary_sparse"))
        self._fill_work(layer, macs, dense_macs, sparse_input, i, o, kwta, None, False, (o, 1, 1), data, constants,
                        accum, boost is not None, matrix, arrays)
        self._add(layer)

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
        arrays.append(self._const(f"{ident}_boost", boost, constants,
                                  f"{op.results[0].name}: k-WTA boost factor per channel (selection only)"))
        return f"{ident}_bias", f"{ident}_boost"

    def _fill_work(self, layer: Layer, macs: float, dense_macs: int, sparse_input: bool, input_size: int,
                   acc_size: int, kwta: _Kwta | None, pool: tuple[int, int, int, int] | None, pool_first: bool,
                   dims: tuple[int, int, int], data: Precision, constants: Precision, accum: Precision,
                   boosted: bool, matrix: np.ndarray, arrays: list[ConstArray]) -> None:
        channels, height, width = dims
        kwta_size = acc_size
        pool_reads = 0
        if pool is not None:
            ph = (height - pool[0]) // pool[2] + 1
            pw = (width - pool[1]) // pool[3] + 1
            pool_reads = channels * ph * pw * pool[0] * pool[1]
            if pool_first:
                kwta_size = channels * ph * pw
        groups = (kwta_size // channels if kwta.local else 1) if kwta else 0
        key_bits = _key_bits(data, constants if boosted else None)
        buffer_bits = layer.output.size * data.bits + acc_size * accum.bits
        stored_bits = sum(a.count * _element_bits(a, constants) for a in arrays)
        rows, cols = matrix.shape
        dense_bits = rows * cols * constants.bits + sum(
            a.count * _element_bits(a, constants) for a in arrays if a.name.endswith(("_bias", "_boost")))
        common = dict(elements=acc_size, kwta_groups=groups, kwta_group_size=(kwta_size // groups) if groups else 0,
                      kwta_key_bits=key_bits if kwta else 0, pool_reads=pool_reads, buffer_bits=buffer_bits,
                      multiplier_bits=max(data.bits, constants.bits))
        layer.work = Work(macs=macs, scan=input_size if sparse_input else 0, weight_bits=stored_bits, **common)
        layer.dense_work = Work(macs=dense_macs, scan=0, weight_bits=dense_bits, **common)

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
        mode = self._kwta_mode(op, op.attr("k"), op.attr("over"), op.attr("ties"), rank=len(source.shape) + 1)
        ident, data, constants, _, output = self._layer(op, suffixes=("config", "boost"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::kwta_defaults")
        config.constant(["channels", "height", "width"], [c, h, w])
        config.constant("k", op.attr("k"))
        if mode.local:
            config.constant("local", True, "bool")
        if mode.break_ties:
            config.constant("break_ties", True, "bool")
        boost = _per_channel(_constant(op.operand("boost"), "boost", op), c, "the k-WTA boost", op)
        arrays = []
        args = []
        if boost is not None:
            config.constant("boost", True, "bool", "select on x * boost[c]")
            config.typedef(constants.constant_ctype(), "boost_t")
            arrays.append(self._const(f"{ident}_boost", boost, constants,
                                      f"{op.results[0].name}: k-WTA boost factor per channel (selection only)"))
            args.append(f"{ident}_boost")
        config.constant("radix_bits", self.options.radix_bits)
        size = c * h * w
        groups = h * w if mode.local else 1
        summary = (f"{op.name} {source.shape_text()}: k-WTA k={op.attr('k')} of {size // groups} "
                   f"({'local: over C at each pixel' if mode.local else 'global'}"
                   f"{', ties broken' if mode.break_ties else ''}{', boosted' if boost is not None else ''})")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::kwta<{config.name}>", args, [source], output, data, config, arrays)
        work = Work(elements=0, kwta_groups=groups, kwta_group_size=size // groups,
                    kwta_key_bits=_key_bits(data, constants if boost is not None else None),
                    weight_bits=sum(a.count * constants.bits for a in arrays), buffer_bits=size * data.bits,
                    multiplier_bits=max(data.bits, constants.bits) if boost is not None else 0)
        layer.work = work
        layer.dense_work = dataclasses.replace(work)
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
        ident, data, constants, accum, output = self._layer(op, suffixes=("config", "scale", "shift"))
        config = ConfigStruct(f"{ident}_config", "")
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
        layer.work = Work(elements=c * h * w, weight_bits=2 * c * constants.bits, buffer_bits=c * h * w * data.bits,
                          multiplier_bits=max(data.bits, constants.bits))
        layer.dense_work = dataclasses.replace(layer.work)
        self._add(layer)

    def _simple(self, op: Operation, function: str, summary: str, work: Work, config: ConfigStruct | None = None,
                inputs: list[Buffer] | None = None) -> None:
        x = op.operand_values[0]
        sources = inputs or [self._buffer(x, op)]
        ident, data, _, _, output = self._layer(op, suffixes=("config",))
        if config is not None:
            config.name = f"{ident}_config"
            config.comment = summary
            function = function.replace("CONFIG", config.name)
        work.buffer_bits = output.size * data.bits
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary, function, [], sources,
                      output, data, config)
        layer.work = work
        layer.dense_work = dataclasses.replace(work)
        self._add(layer)

    def _relu(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        self._simple(op, f"sparsecc::relu<{source.size}>", f"{op.name} {source.shape_text()}: max(x, 0)",
                     Work(elements=source.size))

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
        self._simple(op, f"sparsecc::{kind}<CONFIG>", summary,
                     Work(pool_reads=math.prod(out) * window[0] * window[1]), config)

    def _global_avgpool(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        c, h, w = self._chw(source)
        config = ConfigStruct("", "")
        config.constant(["channels", "height", "width"], [c, h, w])
        _, _, accum, _ = self._precision(op)
        config.typedef(accum.ctype(), "accum_t")
        self._simple(op, "sparsecc::global_avgpool<CONFIG>", f"{op.name} {source.shape_text()} -> {c}: mean over HxW",
                     Work(pool_reads=c * h * w), config)

    def _softmax(self, op: Operation) -> None:
        source = self._buffer(op.operand_values[0], op)
        rank = len(source.shape) + 1
        axis = normalize_axis(op.attr("axis"), rank)
        if axis != 1 or any(d != 1 for d in source.shape[1:]):
            raise CompileError(f"{op.name} over axis {op.attr('axis')} of a rank-{rank} tensor: the HLS kernels take "
                               "(log-)softmax over the features of (batch, features)", op_type=op.name)
        kind = "log_softmax" if isinstance(op, ops.LogSoftmax) else "softmax"
        self._simple(op, f"sparsecc::{kind}<{source.size}>", f"{op.name} over {source.size} values (float math)",
                     Work(elements=3 * source.size))

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
        self._simple(op, f"sparsecc::concat_channels<{a.size}, {b.size}>", summary, Work(elements=a.size + b.size),
                     inputs=sources)


def _kernel_function(kernel: str, storage: str) -> str:
    """The kernel name suffix for a kernel kind and the weight storage used."""
    if storage == "dense":
        return "act_sparse" if kernel == "act_sparse" else "dense"
    if storage == "complementary":
        return "complementary_sparse" if kernel == "sparse_sparse" else "complementary"
    return {"ell": "ell", "csc": "sparse_sparse"}[storage]


def _element_bits(array: ConstArray, constants: Precision) -> int:
    """Bits of one stored element: the value type's width for values, the index type's for indices."""
    if array.ctype.startswith("uint"):
        return int(array.ctype[4:-2])
    return constants.bits
