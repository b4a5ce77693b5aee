"""The lowered HLS design: activation buffers, layer calls with their configs and constants, views, ports."""

from __future__ import annotations

import dataclasses
import math
import re

from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir.core import Value

from .cpp import ConfigStruct, ConstArray
from .loops import LoopModel
from .options import HLSOptions
from .precision import Precision


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


def sample_shape(value: Value) -> tuple[int, ...]:
    shape = value.type.shape
    if len(shape) < 1 or any(d is None for d in shape[1:]):
        raise CompileError(f"value %{value.name} has shape {list(shape)}: the HLS target needs a batch axis "
                           "first and static sizes elsewhere")
    return tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]


def element_bits(array: ConstArray, constants: Precision) -> int:
    """Bits of one stored element: the value type's width for values, the index type's for indices."""
    if array.ctype.startswith("uint"):
        return int(array.ctype[4:-2])
    match = re.search(r"ap_u?fixed<(\d+)", array.ctype)
    if match:
        return int(match.group(1))
    return 32 if array.ctype == "float" else constants.bits
