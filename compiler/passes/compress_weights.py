"""The ``compress-weights`` pass: choose a storage format for every conv/linear weight.

Expects: weights that are constants (their measured sparsity may already be recorded as ``#sparse``).
For each layer's weight it records the chosen format in the constant's type: no encoding (dense),
``#csr``, ``#csc``, ``#bsr<block_rows, block_cols>`` or ``#ell<fan_in>``, each with the measured density.
The data is unchanged (targets pack it), so the function is unchanged.

``format=auto`` asks the cost model (:func:`sparsecc.compiler.cost_model.plan_layer`) for the format of the
kernel it will choose on ``target`` (``generic``, ``llvm``, ``cuda`` or ``hls``), e.g. generically:

* density above ``dense-above`` (default 0.5): dense — indexing would cost more than the zeros save;
* the layer's input carries a k-WTA bound with density at most ``act-sparse-below``: ``#csc`` — kernels
  scatter each active input over the non-zeros of its column;
* every row has the same number of non-zeros (fixed fan-in): ``#ell`` — regular rows, no row pointers;
* otherwise ``#csr``.

``layers=NAME:FORMAT;NAME:FORMAT`` overrides the choice per layer (NAME is the layer's result or weight
name); ``format=`` other than auto applies one format everywhere. ``block=RxC`` sets the BSR block shape.
"""

from __future__ import annotations

import dataclasses

from ..cost_model import TARGETS, plan_layer
from ..errors import PassError
from ..ir import ops
from ..ir.core import Module, Value
from ..ir.types import BSR, CSC, CSR, ELL, Encoding
from ..ir.weights import measure_weight_sparsity
from ..kernel_profile import KernelProfile, load_profile, profile_for
from .base import Pass

FORMATS = ("auto", "dense", "csr", "csc", "bsr", "ell")
LAYERS = (ops.Conv2D, ops.Linear, ops.SparseConv2D, ops.SparseLinear)


def _parse_layers(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(";"))):
        name, sep, fmt = item.rpartition(":")
        if not sep or not name or fmt not in FORMATS[1:]:
            raise PassError(f"compress-weights: bad layer override '{item}' (expected NAME:FORMAT, FORMAT one of "
                            f"{', '.join(FORMATS[1:])})")
        out[name] = fmt
    return out


@dataclasses.dataclass(frozen=True)
class CompressWeights(Pass):
    """Choose a storage format (dense, CSR, CSC, BSR, ELL) for each layer's weights."""

    name = "compress-weights"
    format: str = "auto"
    target: str = "generic"
    profile: str = ""
    dense_above: float | None = None
    act_sparse_below: float | None = None
    block: str = "1x16"
    layers: str = ""
    # derived from the options at construction (never changed by apply)
    _block: tuple[int, int] = dataclasses.field(init=False, repr=False, compare=False)
    _profile: KernelProfile = dataclasses.field(init=False, repr=False, compare=False)
    _overrides: dict[str, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise PassError(f"compress-weights: target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        if self.format not in FORMATS:
            raise PassError(f"compress-weights: format must be one of {', '.join(FORMATS)}, got '{self.format}'")
        try:
            rows, cols = (int(v) for v in self.block.lower().split("x"))
        except ValueError:
            raise PassError(f"compress-weights: block must look like 4x4, got '{self.block}'") from None
        object.__setattr__(self, "_block", (rows, cols))
        object.__setattr__(self, "_profile", load_profile(self.profile or profile_for(self.target)))
        object.__setattr__(self, "_overrides", _parse_layers(self.layers))

    def choose(self, layer: ops.WeightedLayer, weight: Value) -> str:
        for key in (layer.result.name, weight.name):
            if key in self._overrides:
                return self._overrides[key]
        if self.format != "auto":
            return self.format
        return plan_layer(layer, self.target, profile=self._profile, dense_above=self.dense_above,
                          act_sparse_below=self.act_sparse_below).format

    def encoding(self, fmt: str, weight: ops.Constant) -> Encoding | None:
        m = measure_weight_sparsity(weight.value)
        if fmt == "dense":
            return None
        if fmt == "csr":
            return CSR(m.density)
        if fmt == "csc":
            return CSC(m.density)
        if fmt == "ell":
            return ELL(m.max_row_nnz, m.density)
        rows, cols = self._block
        if m.rows % rows or m.cols % cols:
            raise PassError(f"compress-weights: {rows}x{cols} blocks do not tile the {m.rows}x{m.cols} weight "
                            f"'{weight.result.name}'")
        return BSR(rows, cols, m.density)

    def apply(self, module: Module) -> None:
        decided: dict[int, Encoding | None] = {}
        for layer in module.walk(LAYERS):
            weight = layer.weight
            if not isinstance(weight.owner, ops.Constant):
                continue
            enc = self.encoding(self.choose(layer, weight), weight.owner)
            if id(weight) in decided and decided[id(weight)] != enc:
                # a weight shared by layers that want different formats: give this layer its own copy
                copy = module.func.insert_before(layer, ops.Constant.of(weight.owner.value, name=weight.name))
                layer.set_operand("weight", copy.result)
                weight = copy.result
            weight.set_type(weight.type.with_encoding(enc))
            decided[id(weight)] = enc
