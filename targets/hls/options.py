"""The options of the HLS target (``sparsecc.compile(..., target="hls", **options)``).

=================  ==========================  ================================================================
option             default                     meaning
=================  ==========================  ================================================================
precision          ``"float"``                 model data type: ``float`` or ``ap_fixed<W,I[,Q,O[,N]]>``
layer_precision    ``""``                      per-layer data type: ``"NAME:ap_fixed<18,8>;NAME:..."`` (NAME: the
                                               layer's result name in the IR; fixed-point models only)
weight_precision   the model precision         type of weights, biases, scale/shift and boost factors
accum_precision    derived (precision.py)      accumulator type of the layers in the model precision
interface          ``"array"``                 top-level ports: ``array`` (ap_memory) or ``axis`` (AXI4-Stream)
part               ``xcu250-figd2104-2L-e``    FPGA part written into build.tcl
clock_mhz          ``250``                     target clock (build.tcl and the latency estimates)
packing            ``"none"``                  ``complementary``: weight-sparse layers use complementary
                                               sparsity packing (formats.h) instead of ELL / CSC
pack_size          ``4``                       units per complementary group
radix_bits         ``4``                       digit width of the k-WTA radix select (1..8)
lanes              ``1``                       MAC / k-WTA lanes of every layer (snapped to what it accepts)
reuse_factor       (none)                      hls4ml's knob: lanes = ceil(loop length / reuse_factor) per layer
target_fps         (none)                      fewest lanes per layer that reach this many samples/s
budget             (none)                      ``zcu104`` or ``u250``: the fastest lanes that fit that part
layer_lanes        ``""``                      per-layer lanes ``"NAME:L;NAME:L"`` (after the choices above)
dense              ``False``                   generate the dense twin (every conv / linear dense)
fast_math          ``False``                   float designs: drop the IEEE stage, NaN-aware k-WTA keys and
                                               max-pool (``ieee = false`` in every layer config; README)
csim_cache         ``~/.cache/sparsecc/hls``   where C-simulation builds are cached (API only; never in a
                                               manifest: a loaded project takes it from its caller)
csim_stack_mib     derived from the buffers    stack of the C-simulation thread (feature maps are locals)
emit_source        (ignored)                   accepted for the CLI: the project *is* source
=================  ==========================  ================================================================
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparsecc.compiler.errors import CompileError

from ..options import HLSTargetOptions, option_specs
from .cpp import ConfigStruct
from .precision import FLOAT, Precision, parse_layer_precisions, parse_precision

_DECLARED = {spec.name: spec for spec in option_specs(HLSTargetOptions)}
INTERFACES = _DECLARED["interface"].choices
BUDGETS = _DECLARED["budget"].choices
PACKINGS = _DECLARED["packing"].choices
DEFAULT_PART: str = _DECLARED["part"].default
DEFAULT_CLOCK_MHZ: float = _DECLARED["clock_mhz"].default


def default_cache_dir() -> Path:
    """Where C-simulation builds are kept between runs (content-addressed, safe to delete)."""
    return Path.home() / ".cache" / "sparsecc" / "hls"


@dataclasses.dataclass(frozen=True)
class HLSOptions:
    """Validated options of one HLS compilation (see module docstring)."""

    precision: Precision = FLOAT
    layer_precision: tuple[tuple[str, Precision], ...] = ()
    weight_precision: Precision | None = None
    accum_precision: Precision | None = None
    interface: str = "array"
    part: str = DEFAULT_PART
    clock_mhz: float = DEFAULT_CLOCK_MHZ
    packing: str = "none"
    pack_size: int = 4
    radix_bits: int = 4
    csim_cache: Path | None = None
    csim_stack_mib: int | None = None
    lanes: int = 1
    reuse_factor: int | None = None
    target_fps: float | None = None
    budget: str | None = None
    layer_lanes: tuple[tuple[str, int], ...] = ()
    dense: bool = False
    fast_math: bool = False

    @staticmethod
    def from_options(options: dict[str, Any]) -> HLSOptions:
        """Parse keyword options (strings as the CLI gives them, or typed values); unknown names raise."""
        known = set(_DECLARED)
        unknown = sorted(set(options) - known)
        if unknown:
            raise CompileError(f"unknown hls option(s) {unknown}; options: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for name in ("precision", "weight_precision", "accum_precision"):
            value = options.get(name)
            if value is not None:
                values[name] = value if isinstance(value, Precision) else parse_precision(str(value), name)
        layers = options.get("layer_precision")
        if layers:
            parsed = layers if isinstance(layers, dict) else parse_layer_precisions(str(layers))
            values["layer_precision"] = tuple(sorted(
                (name, p if isinstance(p, Precision) else parse_precision(str(p), f"layer_precision '{name}'"))
                for name, p in parsed.items()))
        for name, choices in (("interface", INTERFACES), ("packing", PACKINGS)):
            if options.get(name) is not None:
                if options[name] not in choices:
                    raise CompileError(f"{name} must be one of {', '.join(choices)}, got '{options[name]}'")
                values[name] = options[name]
        if options.get("part") is not None:
            part = str(options["part"]).strip()
            if not part or any(c.isspace() for c in part):
                raise CompileError(f"part must be a Xilinx part name such as {DEFAULT_PART}, got '{part}'")
            values["part"] = part
        if options.get("clock_mhz") is not None:
            values["clock_mhz"] = _number(options["clock_mhz"], "clock_mhz", float, 1.0, 1000.0)
        if options.get("pack_size") is not None:
            values["pack_size"] = _number(options["pack_size"], "pack_size", int, 1, 64)
        if options.get("radix_bits") is not None:
            values["radix_bits"] = _number(options["radix_bits"], "radix_bits", int, 1, 8)
        if options.get("csim_stack_mib") is not None:
            values["csim_stack_mib"] = _number(options["csim_stack_mib"], "csim_stack_mib", int, 8, 65536)
        if options.get("csim_cache") is not None:
            values["csim_cache"] = Path(options["csim_cache"])
        if options.get("lanes") is not None:
            values["lanes"] = _number(options["lanes"], "lanes", int, 1, 4096)
        if options.get("reuse_factor") is not None:
            values["reuse_factor"] = _number(options["reuse_factor"], "reuse_factor", int, 1, 10**9)
        if options.get("target_fps") is not None:
            values["target_fps"] = _number(options["target_fps"], "target_fps", float, 1e-3, 1e12)
        if options.get("budget") is not None:
            if options["budget"] not in BUDGETS:
                raise CompileError(f"budget must be one of {', '.join(BUDGETS)}, got '{options['budget']}'")
            values["budget"] = options["budget"]
        chosen = [n for n in ("reuse_factor", "target_fps", "budget") if n in values]
        if len(chosen) > 1 or (chosen and "lanes" in values):
            raise CompileError(f"give one of lanes, reuse_factor, target_fps, budget (got {', '.join(chosen)}"
                               f"{', lanes' if 'lanes' in values and chosen else ''})")
        if options.get("layer_lanes"):
            values["layer_lanes"] = tuple(sorted(_layer_lanes(options["layer_lanes"]).items()))
        if options.get("dense") is not None:
            dense = options["dense"]
            if isinstance(dense, str):
                if dense.lower() not in ("true", "false", "1", "0"):
                    raise CompileError(f"dense must be true or false, got '{dense}'")
                dense = dense.lower() in ("true", "1")
            values["dense"] = bool(dense)
        if options.get("fast_math") is not None:
            fast = options["fast_math"]
            if isinstance(fast, str) and fast.lower() in ("true", "false", "1", "0"):
                fast = fast.lower() in ("true", "1")
            if not isinstance(fast, bool):
                raise CompileError(f"fast_math must be True or False, got {type(fast).__name__} {fast!r}")
            values["fast_math"] = fast
        result = HLSOptions(**values)
        result.check_mixing()
        if result.fast_math and not result.precision.is_float:
            raise CompileError("fast_math applies to float designs only (ap_fixed designs have no inf or NaN)")
        return result

    @property
    def layer_precisions(self) -> dict[str, Precision]:
        return dict(self.layer_precision)

    @property
    def constants(self) -> Precision:
        """Precision of the constants of layers in the model precision."""
        return self.weight_precision or self.precision

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    @property
    def cache_dir(self) -> Path:
        return self.csim_cache or default_cache_dir()

    def check_mixing(self) -> None:
        """float and ap_fixed are not mixed in one design: ap_types has no float x ap_fixed arithmetic."""
        kinds = {p.is_float for p in (self.precision, self.weight_precision, self.accum_precision) if p}
        kinds |= {p.is_float for _, p in self.layer_precision}
        if len(kinds) > 1:
            raise CompileError("the HLS target does not mix float and ap_fixed in one design (the ap_types "
                               "headers define no float x ap_fixed arithmetic): make precision, "
                               "weight_precision, accum_precision and layer_precision all float or all ap_fixed")

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``target_options`` (strings, re-parseable by :meth:`from_options`)."""
        out: dict[str, Any] = {
            "precision": str(self.precision), "interface": self.interface, "part": self.part,
            "clock_mhz": self.clock_mhz, "packing": self.packing, "pack_size": self.pack_size,
            "radix_bits": self.radix_bits,
        }
        if self.layer_precision:
            out["layer_precision"] = ";".join(f"{n}:{p}" for n, p in self.layer_precision)
        if self.weight_precision:
            out["weight_precision"] = str(self.weight_precision)
        if self.accum_precision:
            out["accum_precision"] = str(self.accum_precision)
        if self.csim_stack_mib:
            out["csim_stack_mib"] = self.csim_stack_mib
        if self.lanes != 1:
            out["lanes"] = self.lanes
        for name in ("reuse_factor", "target_fps", "budget"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.layer_lanes:
            out["layer_lanes"] = ";".join(f"{n}:{v}" for n, v in self.layer_lanes)
        if self.dense:
            out["dense"] = True
        if self.fast_math:
            out["fast_math"] = True
        return out

    @property
    def ieee(self) -> bool:
        """Whether the design follows the IEEE rules on inf/NaN inputs (float data, no fast math; ieee.h)."""
        return self.precision.is_float and not self.fast_math

    def mark_fast_math(self, config: ConfigStruct) -> None:
        """``ieee = false`` in a layer config of a fast-math float design (nothing otherwise: the headers'
        default, IEEE for float data, holds, and ap_fixed configs stay as they were)."""
        if self.fast_math and self.precision.is_float:
            config.constant("ieee", False, "bool", "fast math: no IEEE stage (README, 'IEEE special values')")


def _layer_lanes(value: Any) -> dict[str, int]:
    """``NAME:L;NAME:L`` (or a dict) -> lanes by layer name."""
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = []
        for item in filter(None, (part.strip() for part in str(value).split(";"))):
            name, sep, lanes = item.rpartition(":")
            if not sep or not name.strip():
                raise CompileError(f"layer_lanes: bad entry '{item}' (expected NAME:LANES, e.g. 'conv1:4')")
            items.append((name.strip(), lanes))
    return {name: _number(lanes, f"layer_lanes entry '{name}'", int, 1, 4096) for name, lanes in items}


def _number(value: Any, name: str, kind: type, low: float, high: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise CompileError(f"{name} must be a number, got '{value}'") from None
    if not low <= number <= high:
        raise CompileError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    return number
