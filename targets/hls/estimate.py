"""Performance and resource estimates of a generated HLS design, without Vivado (``report/estimate.*``).

The estimate describes the generated code and nothing else: for every layer it reads the ``lanes`` the
generator wrote into the layer's config (the UNROLL factor of its MAC and k-WTA loops and the partition factor
of the arrays they read) and the layer's loop model (:mod:`.loops`), and computes

* **cycles per stage** = cycles issued by the stage's pipelined loops (sum of their II over the iterations)
  + entries x the stage's pipeline depth (:data:`PIPELINE_DEPTH`): the same two numbers the instrumented
  C-simulation counts on real inputs (:func:`measured_stage_cycles`);
* **layer interval** = the slowest stage (the stages of a layer are DATAFLOW processes), **design interval**
  = the slowest layer (layers are DATAFLOW processes of the top function), **latency** = sum of all stages;
* **resources** of one instance (no replication): DSPs and LUTs of the lanes, memories from the arrays as
  partitioned: constants (ROMs) in LUTRAM or BRAM18 -- never URAM, which cannot be initialised (UG901) --
  and buffers (RAMs, double-buffered where they are DATAFLOW channels) in LUTRAM, BRAM18 or URAM.

The dense twin (every conv / linear dense, same lanes policy) is estimated the same way for the ratio.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from .design import Design, Layer, element_bits
from .loops import STAGES

#: Pipeline depth (fill + drain cycles) paid per entry of a pipelined loop, per stage; float MACs are deeper.
PIPELINE_DEPTH = {"mac": 4, "scan": 3, "pointwise": 4, "kwta": 4, "pool": 3}
FLOAT_MAC_DEPTH = 12


@dataclasses.dataclass(frozen=True)
class Part:
    """An FPGA part's resources (the whole device)."""

    key: str
    name: str
    board: str
    dsp: int
    bram18: int
    uram: int
    lut: int


#: Parts every report covers (Xilinx data sheets DS962 / DS891).
PARTS = (
    Part("u250", "xcu250-figd2104-2L-e", "Alveo U250", dsp=12288, bram18=5376, uram=1280, lut=1_728_000),
    Part("zcu104", "xczu7ev-ffvc1156-2-e", "ZCU104 (Zynq UltraScale+ ZU7EV)", dsp=1728, bram18=624, uram=96,
         lut=230_400),
)
PARTS_BY_KEY = {part.key: part for part in PARTS}

USABLE_FRACTION = 0.7  # of each resource, leaving room for the platform shell, routing and I/O
FLOAT_MAC_DSP = 5  # float32 multiply (3) + add (2)
FLOAT_MAC_LUT = 350
FIXED_MAC_LUT = 40
SCATTER_LANE_LUT = 80  # index arithmetic and the bank's address of a scatter lane
KWTA_COUNTER_LUT = 10  # per histogram counter
KWTA_LANE_LUT = 60
LAYER_LUT = 1000
BRAM18_BITS = 18 * 1024
URAM_BITS = 288 * 1024
URAM_ABOVE_BITS = 4 * BRAM18_BITS
LUTRAM_MAX_BITS = 1024
#: The sparse/dense ratios the seeds reported on FPGAs.
SEEDS = {"ratios": [50, 100], "source": "DESIGN.md section 1: 'On FPGAs this gave 50-100x over dense'"}


@dataclasses.dataclass
class Resources:
    dsp: int = 0
    bram18: int = 0
    uram: int = 0
    lut: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.dsp + other.dsp, self.bram18 + other.bram18, self.uram + other.uram,
                         self.lut + other.lut)

    def fits(self, part: Part) -> bool:
        return all(used <= available * USABLE_FRACTION for used, available in (
            (self.dsp, part.dsp), (self.bram18, part.bram18), (self.uram, part.uram), (self.lut, part.lut)))

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# -- cycles ----------------------------------------------------------------------------------------------------
def depth(layer: Layer, stage: str) -> int:
    if stage == "mac" and layer.precision.is_float:
        return FLOAT_MAC_DEPTH
    return PIPELINE_DEPTH[stage]


def stage_cycles(layer: Layer, lanes: int | None = None) -> dict[str, int]:
    """Estimated cycles of each stage of a layer at ``lanes`` (default: the generated lanes)."""
    counts = layer.loops.iterations(layer.lanes if lanes is None else lanes)
    return {stage: math.ceil(issued + entries * depth(layer, stage)) for stage, (issued, entries) in counts.items()}


def measured_stage_cycles(layer: Layer, counts: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Cycles of each stage from the instrumented C-simulation's (cycles issued, entries) per sample."""
    return {stage: math.ceil(issued + entries * depth(layer, stage)) for stage, (issued, entries) in counts.items()
            if issued or entries}


def interval(cycles: dict[str, int]) -> int:
    return max(cycles.values(), default=1)


def latency(cycles: dict[str, int]) -> int:
    return sum(cycles.values()) or 1


# -- resources -------------------------------------------------------------------------------------------------
def _memory(bits: int, banks: int, part: Part | None, rom: bool) -> Resources:
    if bits <= 0:
        return Resources()
    per_bank = math.ceil(bits / banks)
    if per_bank <= LUTRAM_MAX_BITS:
        return Resources(lut=banks * math.ceil(per_bank / 64))
    bram = Resources(bram18=banks * math.ceil(per_bank / BRAM18_BITS))
    if rom or part is None or not part.uram or per_bank <= URAM_ABOVE_BITS:
        return bram
    uram = Resources(uram=banks * math.ceil(per_bank / URAM_BITS))
    return uram if uram.uram / part.uram <= bram.bram18 / part.bram18 else bram


def _mul_dsp(layer: Layer) -> int:
    if layer.precision.is_float:
        return FLOAT_MAC_DSP
    bits = layer.precision.bits
    return math.ceil(bits / 27) * math.ceil(bits / 18)


def layer_resources(layer: Layer, part: Part | None, lanes: int | None = None) -> Resources:
    """DSP / BRAM18 / URAM / LUT of one layer at ``lanes`` (default: the generated lanes)."""
    lanes = layer.lanes if lanes is None else lanes
    loops = layer.loops
    used = Resources(lut=LAYER_LUT)
    if loops.kind:
        lut = FLOAT_MAC_LUT if layer.precision.is_float else FIXED_MAC_LUT
        if loops.kind != "gather":
            lut += SCATTER_LANE_LUT
        used = used + Resources(dsp=lanes * _mul_dsp(layer), lut=lanes * lut)
    if loops.kwta is not None:
        units = loops.kwta.lanes(lanes)
        boost = _mul_dsp(layer) if any(a.name.endswith("_boost") for a in layer.arrays) else 0
        used = used + Resources(dsp=units * boost, lut=units * (2**loops.kwta.radix_bits * KWTA_COUNTER_LUT
                                                              + KWTA_LANE_LUT))
    for array in layer.arrays:
        bits = array.count * _bits(array, layer)
        if loops.kind == "scatter" and lanes != layer.lanes and array.name.endswith(("_row_idx", "_val")):
            bits = bits * loops.stored_entries(lanes) // max(loops.stored_entries(layer.lanes), 1)
        used = used + _memory(bits, lanes if array.name in layer.banked_arrays else 1, part, rom=True)
    for what, elements, bits, banks, copies in layer.rams:
        banks = _scaled_banks(what, banks, layer.lanes, lanes)
        copies = (lanes + 1) // 2 if what == "input replicas" else copies
        if what == "input replicas" and lanes <= 2:
            continue
        for _ in range(copies):
            used = used + _memory(elements * bits, banks, part, rom=False)
    if lanes > 2 and loops.kind == "gather" and loops.replicate and not any(
            r[0] == "input replicas" for r in layer.rams):
        for _ in range((lanes + 1) // 2):
            used = used + _memory(loops.inputs * layer.precision.bits, 1, part, rom=False)
    # the layer's output buffer: a PIPO channel between layers
    for _ in range(2):
        used = used + _memory(layer.output.size * layer.precision.bits, 1, part, rom=False)
    return used


def _scaled_banks(what: str, banks: int, generated: int, lanes: int) -> int:
    """Banks of a buffer at other lanes than generated (the chooser evaluates alternatives)."""
    if lanes == generated or banks == 1:
        return banks
    return lanes


def _bits(array: Any, layer: Layer) -> int:
    return element_bits(array, layer.precision)


# -- a design ----------------------------------------------------------------------------------------------------
def design_summary(layers: list[Layer], clock_mhz: float) -> dict[str, Any]:
    """Interval, latency, throughput and resources per part of a design at its generated lanes."""
    cycles = [stage_cycles(layer) for layer in layers]
    ii = max((interval(c) for c in cycles), default=1)
    total_latency = sum(latency(c) for c in cycles)
    parts = {}
    for part in PARTS:
        total = Resources()
        for layer in layers:
            total = total + layer_resources(layer, part)
        parts[part.key] = {
            "board": part.board, "resources": total.to_json(), "fits": total.fits(part),
            "utilisation": {"dsp": total.dsp / part.dsp, "bram18": total.bram18 / part.bram18,
                            "uram": total.uram / part.uram if part.uram else 0.0, "lut": total.lut / part.lut},
        }
    return {"ii_cycles": ii, "latency_cycles": total_latency, "latency_us": total_latency / clock_mhz,
            "throughput": clock_mhz * 1e6 / ii, "lanes": {layer.name: layer.lanes for layer in layers},
            "parts": parts}


def layer_entry(layer: Layer, clock_mhz: float) -> dict[str, Any]:
    cycles = stage_cycles(layer)
    return {
        "index": layer.index + 1, "name": layer.name, "op": layer.op_name, "kernel": layer.kernel or None,
        "mac_loop": layer.loops.kind or None, "weight_format": layer.weight_format or None, "call": layer.function,
        "output_shape": list(layer.output.shape), "lanes": layer.lanes, "macs": layer.work.macs,
        "weight_bits": layer.work.weight_bits, "stage_cycles": cycles, "ii_cycles": interval(cycles),
        "latency_cycles": latency(cycles), "latency_us": latency(cycles) / clock_mhz,
        "resources": {part.key: layer_resources(layer, part).to_json() for part in PARTS},
    }


def estimate(design: Design, dense: Design | None = None) -> dict[str, Any]:
    """The estimate report (JSON-ready) of a design, and of its dense twin when given."""
    options = design.options
    clock = options.clock_mhz
    report: dict[str, Any] = {
        "model": design.model, "top": design.top, "precision": str(options.precision), "clock_mhz": clock,
        "target_part": options.part, "pipeline_depth": {**PIPELINE_DEPTH, "mac (float)": FLOAT_MAC_DEPTH},
        "layers": [layer_entry(layer, clock) for layer in design.layers],
        "total": {"sparse": design_summary(design.layers, clock)},
        "seeds_reported_ratios": SEEDS, "assumptions": ASSUMPTIONS,
    }
    sparse_macs = sum(layer.work.macs for layer in design.layers)
    report["total"]["sparse"]["macs"] = sparse_macs
    if dense is not None:
        report["dense_layers"] = [layer_entry(layer, clock) for layer in dense.layers]
        report["total"]["dense"] = design_summary(dense.layers, clock)
        dense_macs = sum(layer.work.macs for layer in dense.layers)
        report["total"]["dense"]["macs"] = dense_macs
        report["total"]["mac_reduction"] = dense_macs / sparse_macs if sparse_macs else None
        report["total"]["throughput_ratio"] = (report["total"]["dense"]["ii_cycles"]
                                               / report["total"]["sparse"]["ii_cycles"])
    return report


ASSUMPTIONS = [
    "Analytical estimate of the generated code, not Vivado/Vitis results: no synthesis was run.",
    "Every layer runs its config's `lanes`: the UNROLL factor of its MAC loop and (global) k-WTA count/select "
    "loops; compaction, pointwise, pooling and replica loops handle one element per cycle.",
    "Stage cycles = sum of the II of every loop iteration + entries x pipeline depth "
    f"({PIPELINE_DEPTH}, float MACs {FLOAT_MAC_DEPTH}); layer interval = slowest stage (DATAFLOW), design "
    "interval = slowest layer, latency = sum of all stages; one instance, no replication.",
    "Data-dependent counts (active inputs of sparse-input kernels) are expected values from the k-WTA bound of "
    "the input; the instrumented C-simulation measures them.",
    f"Per MAC lane: float32 {FLOAT_MAC_DSP} DSP + {FLOAT_MAC_LUT} LUT; fixed point ceil(w/27)*ceil(w/18) DSP + "
    f"{FIXED_MAC_LUT} LUT; scatter lanes +{SCATTER_LANE_LUT} LUT; a k-WTA lane 2^radix_bits counters x "
    f"{KWTA_COUNTER_LUT} LUT + {KWTA_LANE_LUT} LUT (+ a boost multiplier); {LAYER_LUT} LUT control per layer.",
    f"Constants (ROMs) in LUTRAM up to {LUTRAM_MAX_BITS} bits per bank, else BRAM18 (never URAM: it cannot be "
    "initialised); arrays the MAC loop reads are split into `lanes` banks. Buffers: accumulators, epilogue "
    "buffers and layer outputs double-buffered (DATAFLOW channels), in LUTRAM, BRAM18 or, above "
    f"{URAM_ABOVE_BITS // 1024} Kbit per bank, URAM where it takes the smaller fraction of the part.",
    f"A design fits a part when every resource stays within {USABLE_FRACTION:.0%} of the device.",
]


def _fmt(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The human-readable estimate report."""
    total = report["total"]
    sparse = total["sparse"]
    lines = [
        f"# HLS estimate: {report['model']}",
        "",
        f"Precision {report['precision']}, clock {report['clock_mhz']:g} MHz. The generated design, one instance; "
        "estimated from the lanes written into its configs (no synthesis was run); assumptions below.",
        "",
        "| design | interval (cycles) | latency (us) | samples/s | U250 DSP/BRAM18/URAM/LUT | fits U250 | "
        "ZCU104 fits |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name in ("sparse", "dense"):
        if name not in total:
            continue
        d = total[name]
        r = d["parts"]["u250"]["resources"]
        lines.append(f"| {name} | {d['ii_cycles']:,} | {d['latency_us']:.1f} | {d['throughput']:,.0f} | "
                     f"{r['dsp']:,}/{r['bram18']:,}/{r['uram']:,}/{r['lut']:,} | "
                     f"{'yes' if d['parts']['u250']['fits'] else 'no'} | "
                     f"{'yes' if d['parts']['zcu104']['fits'] else 'no'} |")
    if "throughput_ratio" in total:
        lines += ["", f"Sparse/dense throughput: **{total['throughput_ratio']:.1f}x** (MAC reduction "
                      f"{total['mac_reduction'] or 0:.1f}x)." if total.get("mac_reduction") else
                  f"Sparse/dense throughput: **{total['throughput_ratio']:.1f}x**."]
    seeds = report["seeds_reported_ratios"]
    lines += ["", f"Reported by the seeds: {' and '.join(f'{r}x' for r in seeds['ratios'])} over dense "
                  f"({seeds['source']}).", "", "## Per layer", "",
              "| # | layer | op | MAC loop | lanes | MACs | " + " | ".join(STAGES) + " | interval | "
              "U250 DSP/BRAM18/URAM/LUT |",
              "|---:|---|---|---|---:|---:|" + "---:|" * len(STAGES) + "---:|---|"]
    for layer in report["layers"]:
        r = layer["resources"]["u250"]
        stages = " | ".join(f"{layer['stage_cycles'][s]:,}" if s in layer["stage_cycles"] else "" for s in STAGES)
        lines.append(f"| {layer['index']} | {layer['name']} | {layer['op']} | {layer['mac_loop'] or ''} | "
                     f"{layer['lanes']} | {_fmt(layer['macs'])} | {stages} | {layer['ii_cycles']:,} | "
                     f"{r['dsp']}/{r['bram18']}/{r['uram']}/{r['lut']:,} |")
    lines += ["", f"Design lanes: {sparse['lanes']}", "", "## Assumptions", ""]
    lines += [f"- {a}" for a in report["assumptions"]]
    return "\n".join(lines) + "\n"


def profile_markdown(profile: dict[str, Any]) -> str:
    """The instrumented C-simulation next to the estimate, per layer (HLSModel.profile)."""
    lines = [f"# Instrumented C-simulation: {profile['model']}", "",
             f"{profile['samples']} sample(s). Per layer and stage: cycles = loop iterations x II + entries x pipeline "
             "depth, counted on the inputs (measured) and from the loop model (estimate).", "",
             "| # | layer | lanes | estimate | measured | interval est. | interval meas. |",
             "|---:|---|---:|---|---|---:|---:|"]
    for layer in profile["layers"]:
        def stages(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in d.items())
        lines.append(f"| {layer['index']} | {layer['name']} | {layer['lanes']} | {stages(layer['estimate'])} | "
                     f"{stages(layer['measured'])} | {layer['estimate_interval']:,} | {layer['measured_interval']:,} |")
    lines += ["", f"Design interval: estimate {profile['estimate_interval']:,}, measured "
                  f"{profile['measured_interval']:,} cycles; latency: estimate {profile['estimate_latency']:,}, "
                  f"measured {profile['measured_latency']:,} cycles."]
    return "\n".join(lines) + "\n"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2) + "\n"
