"""Performance and resource estimates of a generated HLS design, without Vivado (``report/estimate.*``).

An analytical model in the spirit of FINN's estimate reports. For each layer it knows the work per sample
of the kernel the design calls (from the lowering: MACs, the input scan of sparse-input kernels, epilogue
and element-wise passes, k-WTA radix select, pooling reads) and of the **same network dense** (every
layer dense: all MACs, no scans; the same k-WTA units and pooling, since the function is the same).

Assumptions (stated in the report, :data:`ASSUMPTIONS`):

* **Dataflow**: layers are concurrent stages of one pipeline (``#pragma HLS DATAFLOW``), and so are the
  stages inside a layer (the kernels are DATAFLOW regions): MAC loop, input scan (sparse-input kernels),
  pointwise epilogue, k-WTA radix select, pooling. A layer's II is its slowest stage; the design's II is its
  slowest layer; the latency of a sample is the sum of all stage cycles.
* **Folding**: a stage with ``P`` lanes handles ``P`` elements per cycle: ``ceil(work / P) + PIPELINE_FILL``
  cycles (k-WTA: ``passes * (ceil(N / P) + 2^R) + ceil(N / P)`` per group: the bin scans do not shrink).
  For a target II every stage gets the fewest lanes that meet it; the design is then replicated as many
  times as the part's resources allow (times ``USABLE_FRACTION``); the target II with the highest
  whole-chip throughput wins, per design and part. Numenta's FPGA work also replicated networks.
* **Data-dependent work** of sparse-input kernels is the expected value from the k-WTA bound of the input
  (at most k non-zeros per group: the bound is used as the density), as in ``sparsecc stats``. Scatter
  lanes are assumed free of accumulator bank conflicts (complementary partitioning of output units).
* **Resources**: per MAC lane, float32 ``FLOAT_MAC_DSP`` DSP48E2 (3 multiplier, 2 adder) and
  ``FLOAT_MAC_LUT`` LUTs; fixed point ``ceil(w/27) * ceil(w/18)`` DSPs for a w-bit multiply with the
  accumulator in the DSP, ``FIXED_MAC_LUT`` LUTs; sparse-input MAC lanes add ``SCATTER_LANE_LUT`` (index
  arithmetic). A k-WTA lane: ``2^R`` counters of ``KWTA_COUNTER_LUT`` LUTs plus ``KWTA_LANE_LUT`` and a
  multiplier for the boost. Scan / pointwise / pooling lanes ``SIMPLE_LANE_LUT``. ``LAYER_LUT`` per layer.
  Memories: constants are split into ``ceil(MAC lanes / 2)`` dual-ported banks, buffers (output ping-pong
  x2, accumulator) into ``ceil(max lanes / 2)``; a bank is LUTRAM (64 bits per LUT) up to
  ``LUTRAM_MAX_BITS``; above ``URAM_ABOVE_BITS`` URAM (288 Kbit) or BRAM18, whichever takes the smaller
  fraction of the part; BRAM18 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from .lowering import Design, Layer, Work
from .precision import Precision


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

USABLE_FRACTION = 0.7  # of each resource, leaving room for the platform shell, routing and I/O
PIPELINE_FILL = 40  # cycles per layer to fill and drain its pipelined loops
FLOAT_MAC_DSP = 5
FLOAT_MAC_LUT = 350
FIXED_MAC_LUT = 40
SCATTER_LANE_LUT = 80
KWTA_COUNTER_LUT = 10  # per 16-bit histogram counter
KWTA_LANE_LUT = 60  # order key, digit select and compare of one k-WTA lane
SIMPLE_LANE_LUT = 20  # a lane of a pointwise / scan / pooling loop
LAYER_LUT = 1000
BRAM18_BITS = 18 * 1024
URAM_BITS = 288 * 1024
URAM_ABOVE_BITS = 4 * BRAM18_BITS
LUTRAM_MAX_BITS = 1024
MAX_LANES = 4096
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

    def instances_on(self, part: Part, memory: bool = True) -> int:
        """How many copies fit in the usable fraction of the part (``memory=False``: DSPs and LUTs only)."""
        limits = []
        pairs = [(self.dsp, part.dsp), (self.lut, part.lut)]
        if memory:
            pairs += [(self.bram18, part.bram18), (self.uram, part.uram)]
        for used, available in pairs:
            if used:
                limits.append(math.floor(available * USABLE_FRACTION / used))
        return min(limits) if limits else 0

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


STAGES = ("mac", "scan", "pointwise", "kwta", "pool")


def stage_work(work: Work) -> dict[str, int]:
    """Element-cycles of each stage of a layer at one lane (stages with no work are left out)."""
    out = {"mac": math.ceil(work.macs), "scan": work.scan, "pointwise": work.elements,
           "kwta": work.kwta_groups * work.kwta_group_size, "pool": work.pool_reads}
    return {stage: amount for stage, amount in out.items() if amount}


def kwta_cycles(work: Work, radix_bits: int, lanes: int = 1) -> int:
    """Radix select per group with ``lanes`` histogram lanes: ceil(key bits / R) passes of
    (ceil(N / lanes) + 2^R) cycles (count, then scan the bins), plus the ceil(N / lanes)-cycle select.
    With more lanes than a group has values (local k-WTA), whole groups run side by side."""
    if not work.kwta_groups:
        return 0
    passes = math.ceil(work.kwta_key_bits / radix_bits)
    size = work.kwta_group_size
    side_by_side = max(1, lanes // size)
    n = math.ceil(size / min(lanes, size))
    return math.ceil(work.kwta_groups / side_by_side) * (passes * (n + 2**radix_bits) + n)


def stage_cycles(stage: str, amount: int, work: Work, lanes: int, radix_bits: int) -> int:
    if stage == "kwta":
        return kwta_cycles(work, radix_bits, lanes) + PIPELINE_FILL
    return math.ceil(amount / lanes) + PIPELINE_FILL


def total_work(work: Work, radix_bits: int) -> int:
    """Cycles of one sample with one lane in every stage (the stages of a sample run one after another)."""
    return sum(stage_cycles(stage, amount, work, 1, radix_bits) - PIPELINE_FILL
               for stage, amount in stage_work(work).items())


def _memory(bits: int, banks: int, part: Part) -> Resources:
    if bits <= 0:
        return Resources()
    per_bank = math.ceil(bits / banks)
    if per_bank <= LUTRAM_MAX_BITS:
        return Resources(lut=banks * math.ceil(per_bank / 64))
    bram = Resources(bram18=banks * math.ceil(per_bank / BRAM18_BITS))
    if not part.uram or per_bank <= URAM_ABOVE_BITS:
        return bram
    uram = Resources(uram=banks * math.ceil(per_bank / URAM_BITS))
    return uram if uram.uram / part.uram <= bram.bram18 / part.bram18 else bram


def _mul_dsp(bits: int, precision: Precision) -> int:
    if precision.is_float:
        return FLOAT_MAC_DSP
    return math.ceil(bits / 27) * math.ceil(bits / 18)


def stage_resources(layer: Layer, work: Work, stage: str, lanes: int, radix_bits: int) -> Resources:
    """Logic of one stage folded to ``lanes`` (memories are counted per layer)."""
    if stage == "mac":
        lut = FLOAT_MAC_LUT if layer.precision.is_float else FIXED_MAC_LUT
        if work.scan:
            lut += SCATTER_LANE_LUT
        return Resources(dsp=lanes * _mul_dsp(work.multiplier_bits, layer.precision), lut=lanes * lut)
    if stage == "kwta":
        boost_dsp = _mul_dsp(work.multiplier_bits, layer.precision) if work.multiplier_bits else 0
        return Resources(dsp=lanes * boost_dsp, lut=lanes * (2**radix_bits * KWTA_COUNTER_LUT + KWTA_LANE_LUT))
    return Resources(lut=lanes * SIMPLE_LANE_LUT)


@dataclasses.dataclass
class LayerFold:
    """One layer folded: lanes per stage, its II (slowest stage), latency (sum of stages) and resources."""

    lanes: dict[str, int]
    cycles: dict[str, int]
    resources: Resources

    @property
    def ii(self) -> int:
        return max(self.cycles.values(), default=PIPELINE_FILL)

    @property
    def latency(self) -> int:
        return sum(self.cycles.values()) or PIPELINE_FILL

    @property
    def max_lanes(self) -> int:
        return max(self.lanes.values(), default=1)


def fold_layer(layer: Layer, work: Work, target: int, part: Part, radix_bits: int) -> LayerFold:
    """The fewest lanes per stage that bring every stage of the layer to ``target`` cycles (or MAX_LANES)."""
    lanes: dict[str, int] = {}
    cycles: dict[str, int] = {}
    used = Resources(lut=LAYER_LUT)
    for stage, amount in stage_work(work).items():
        p = min(MAX_LANES, max(1, math.ceil(amount / max(1, target - PIPELINE_FILL))))
        if stage == "kwta":  # the bin scans do not shrink with lanes: add lanes until the target is met
            while p < MAX_LANES and stage_cycles(stage, amount, work, p, radix_bits) > target:
                p = min(MAX_LANES, p * 2)
        lanes[stage] = p
        cycles[stage] = stage_cycles(stage, amount, work, p, radix_bits)
        used = used + stage_resources(layer, work, stage, p, radix_bits)
    weight_banks = math.ceil(lanes.get("mac", 1) / 2)
    buffer_banks = math.ceil(max(lanes.values(), default=1) / 2)
    used = used + _memory(work.weight_bits, weight_banks, part) + _memory(2 * work.buffer_bits, buffer_banks, part)
    return LayerFold(lanes, cycles, used)


@dataclasses.dataclass
class Folded:
    """One design (sparse or dense) folded for one part."""

    layers: list[LayerFold]
    instances: int

    @property
    def ii(self) -> int:
        return max(layer.ii for layer in self.layers)

    @property
    def latency_cycles(self) -> int:
        return sum(layer.latency for layer in self.layers)

    @property
    def total(self) -> Resources:
        out = Resources()
        for layer in self.layers:
            out = out + layer.resources
        return out


def fold(layers: list[Layer], works: list[Work], part: Part, radix_bits: int, memory: bool = True) -> Folded | None:
    """The folding with the highest whole-chip throughput (None when not even one instance fits).
    ``memory=False`` ignores BRAM and URAM (a compute-bound comparison)."""
    slowest = max([total_work(w, radix_bits) for w in works] + [1])
    best: tuple[float, Folded] | None = None
    targets = {PIPELINE_FILL + math.ceil(slowest / 2 ** (e / 4)) for e in range(0, 4 * 17)}
    for target in sorted(targets, reverse=True):
        candidate = Folded([fold_layer(layer, w, target, part, radix_bits)
                            for layer, w in zip(layers, works, strict=True)], 0)
        candidate.instances = candidate.total.instances_on(part, memory)
        if candidate.instances == 0:
            continue
        throughput = candidate.instances / candidate.ii
        if best is None or throughput > best[0]:
            best = (throughput, candidate)
    return best[1] if best else None


def _design_json(layers: list[Layer], folded: Folded | None, clock_mhz: float, part: Part,
                 works: list[Work], radix_bits: int) -> dict[str, Any]:
    if folded is None:
        weights = sum(w.weight_bits for w in works)
        return {"fits": False, "reason": f"one instance does not fit the usable {USABLE_FRACTION:.0%} of {part.name} "
                                         f"(constants alone: {weights / 1e6:.1f} Mbit)"}
    per_instance = clock_mhz * 1e6 / folded.ii
    total = folded.total
    return {
        "fits": True,
        "instances": folded.instances,
        "ii_cycles": folded.ii,
        "latency_cycles": folded.latency_cycles,
        "latency_us": folded.latency_cycles / clock_mhz,
        "throughput_per_instance": per_instance,
        "throughput": per_instance * folded.instances,
        "resources_per_instance": total.to_json(),
        "utilisation": {
            "dsp": folded.instances * total.dsp / part.dsp, "bram18": folded.instances * total.bram18 / part.bram18,
            "uram": folded.instances * total.uram / part.uram if part.uram else 0.0,
            "lut": folded.instances * total.lut / part.lut,
        },
    }


def estimate(design: Design) -> dict[str, Any]:
    """The estimate report (JSON-ready) of a design: per layer and total, sparse and dense, per part."""
    options = design.options
    radix = options.radix_bits
    clock = options.clock_mhz
    layers = design.layers
    sparse_works = [layer.work for layer in layers]
    dense_works = [layer.dense_work for layer in layers]
    per_part: dict[str, Any] = {}
    folds: dict[str, dict[str, Folded | None]] = {}
    for part in PARTS:
        sparse = fold(layers, sparse_works, part, radix)
        dense = fold(layers, dense_works, part, radix)
        folds[part.key] = {"sparse": sparse, "dense": dense}
        entry: dict[str, Any] = {
            "part": part.name, "board": part.board,
            "device": {"dsp": part.dsp, "bram18": part.bram18, "uram": part.uram, "lut": part.lut},
            "sparse": _design_json(layers, sparse, clock, part, sparse_works, radix),
            "dense": _design_json(layers, dense, clock, part, dense_works, radix),
        }
        unbounded = [fold(layers, w, part, radix, memory=False) for w in (sparse_works, dense_works)]
        if all(unbounded):
            s_free, d_free = unbounded
            entry["throughput_ratio_ignoring_memory"] = (s_free.instances / s_free.ii) / (d_free.instances / d_free.ii)
        if sparse and dense:
            entry["throughput_ratio"] = (sparse.instances / sparse.ii) / (dense.instances / dense.ii)
        else:
            entry["throughput_ratio"] = None
            entry["note"] = ("the dense design does not fit on-chip: the sparse/dense ratio is unbounded here"
                             if sparse and not dense else "the sparse design does not fit")
        per_part[part.key] = entry

    layer_entries = []
    for i, layer in enumerate(layers):
        entry = {
            "index": i + 1, "name": layer.name, "op": layer.op_name, "kernel": layer.kernel or None,
            "weight_format": layer.weight_format or None, "call": layer.function,
            "output_shape": list(layer.output.shape),
        }
        for design_name, work in (("sparse", layer.work), ("dense", layer.dense_work)):
            item: dict[str, Any] = {
                "macs": work.macs, "work_cycles_one_lane": total_work(work, radix),
                "stage_work": stage_work(work), "weight_bits": work.weight_bits,
            }
            for part in PARTS:
                folded = folds[part.key][design_name]
                if folded is None:
                    item[part.key] = None
                    continue
                layer_fold = folded.layers[i]
                item[part.key] = {
                    "lanes": layer_fold.lanes, "stage_cycles": layer_fold.cycles,
                    "cycles": layer_fold.latency, "ii_cycles": layer_fold.ii, "latency_us": layer_fold.latency / clock,
                    **layer_fold.resources.to_json(),
                }
            entry[design_name] = item
        layer_entries.append(entry)

    sparse_macs = sum(w.macs for w in sparse_works)
    dense_macs = sum(w.macs for w in dense_works)
    sparse_cycles = sum(total_work(w, radix) for w in sparse_works)
    dense_cycles = sum(total_work(w, radix) for w in dense_works)
    return {
        "model": design.model,
        "top": design.top,
        "precision": str(options.precision),
        "clock_mhz": clock,
        "target_part": options.part,
        "layers": layer_entries,
        "total": {
            "sparse": {"macs": sparse_macs, "work_cycles_one_lane": sparse_cycles},
            "dense": {"macs": dense_macs, "work_cycles_one_lane": dense_cycles},
            "mac_reduction": dense_macs / sparse_macs if sparse_macs else None,
            "work_reduction": dense_cycles / sparse_cycles if sparse_cycles else None,
            "parts": per_part,
        },
        "seeds_reported_ratios": SEEDS,
        "assumptions": ASSUMPTIONS,
    }


ASSUMPTIONS = [
    "Analytical estimate, not Vivado/Vitis results: no synthesis was run.",
    "Dataflow: layers, and the stages inside a layer (MAC loop, input scan, epilogue, k-WTA, pooling), are "
    "concurrent pipeline stages; layer II = slowest stage, design II = slowest layer; latency = sum of all stage "
    "cycles.",
    f"Folding: a stage with P lanes takes ceil(work / P) + {PIPELINE_FILL} cycles (k-WTA radix select: passes x "
    "(ceil(N / P) + 2^R) + ceil(N / P) per group); for a target II each stage gets the fewest lanes meeting it; "
    "the design is replicated as many times as fits; the target II with the best whole-chip throughput is chosen, "
    "per design and part.",
    f"Usable fraction of every device resource: {USABLE_FRACTION:.0%} (shell, routing, I/O).",
    "Dense design = the same network with every conv/linear layer dense (all MACs, dense inputs, dense weight "
    "ROMs); k-WTA units, pooling and element-wise layers are the same in both designs.",
    "Data-dependent work of sparse-input kernels is the expected value from the k-WTA bound of the input "
    "(k non-zeros per group, ties aside); scatter lanes have no accumulator bank conflicts.",
    f"Per MAC lane: float32 {FLOAT_MAC_DSP} DSP48E2 + {FLOAT_MAC_LUT} LUT; fixed point ceil(w/27)*ceil(w/18) DSP + "
    f"{FIXED_MAC_LUT} LUT (accumulator in the DSP); sparse-input MAC lanes +{SCATTER_LANE_LUT} LUT; a k-WTA lane "
    f"2^radix_bits counters x {KWTA_COUNTER_LUT} LUT + {KWTA_LANE_LUT} LUT + a boost multiplier; scan / "
    f"pointwise / pooling lanes {SIMPLE_LANE_LUT} LUT; {LAYER_LUT} LUT control per layer.",
    f"Memories in dual-port banks (constants: ceil(MAC lanes / 2); buffers: ceil(max lanes / 2)): LUTRAM up to "
    f"{LUTRAM_MAX_BITS} bits per bank; above {URAM_ABOVE_BITS // 1024} Kbit per bank URAM (288 Kbit) or BRAM18, "
    "whichever takes the smaller fraction of the part; BRAM18 otherwise; output buffers are double-buffered "
    "(ping-pong), accumulators single.",
    "Weights stay on chip (no DDR streaming): a design whose constants do not fit does not fit.",
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
    lines = [
        f"# HLS estimate: {report['model']}",
        "",
        f"Precision {report['precision']}, clock {report['clock_mhz']:g} MHz. Sparse design = the generated "
        "project; dense design = the same network with dense kernels. Estimated by sparsecc's analytical model "
        "(no synthesis was run); assumptions below.",
        "",
        f"MACs per sample: sparse {_fmt(total['sparse']['macs'])}, dense {_fmt(total['dense']['macs'])} "
        f"(reduction {total['mac_reduction']:.1f}x). All work at one lane per stage (MACs, input scans, "
        f"epilogues, k-WTA radix select, pooling): sparse {_fmt(total['sparse']['work_cycles_one_lane'])}, dense "
        f"{_fmt(total['dense']['work_cycles_one_lane'])} cycles (reduction {total['work_reduction']:.1f}x).",
        "",
        "## Throughput (whole chip, replicated instances)",
        "",
        "| part | design | instances | II (cycles) | latency (us) | samples/s | DSP | BRAM18 | URAM | LUT |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in total["parts"].values():
        for name in ("sparse", "dense"):
            d = entry[name]
            if not d["fits"]:
                lines.append(f"| {entry['board']} | {name} | does not fit | | | | | | | |")
                continue
            r = d["resources_per_instance"]
            lines.append(
                f"| {entry['board']} | {name} | {d['instances']} | {d['ii_cycles']:,} | {d['latency_us']:.1f} | "
                f"{d['throughput']:,.0f} | {r['dsp']:,} | {r['bram18']:,} | {r['uram']:,} | {r['lut']:,} |")
    lines += ["", "Sparse/dense throughput ratio:", ""]
    for entry in total["parts"].values():
        ratio = entry["throughput_ratio"]
        free = entry.get("throughput_ratio_ignoring_memory")
        compute = f" ({free:.1f}x if on-chip memory were unlimited)" if free is not None else ""
        if ratio is None:
            lines.append(f"- {entry['board']}: {entry['note']}{compute}")
        else:
            lines.append(f"- {entry['board']}: **{ratio:.1f}x** (whole chip){compute}")
    seeds = report["seeds_reported_ratios"]
    lines += ["", f"Reported by the seeds: {' and '.join(f'{r}x' for r in seeds['ratios'])} over dense "
                  f"({seeds['source']})"
              + ".", "", "## Per layer (U250 folding)", "",
              "| # | layer | op | kernel | sparse MACs | dense MACs | sparse II | dense II | sparse MAC lanes | "
              "dense MAC lanes | sparse DSP/BRAM18/URAM/LUT | dense DSP/BRAM18/URAM/LUT |",
              "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for layer in report["layers"]:
        s, d = layer["sparse"].get("u250"), layer["dense"].get("u250")

        def cell(x: dict[str, Any] | None, key: str) -> str:
            if x is None:
                return "-"
            value = x[key].get("mac", "") if key == "lanes" else x[key]
            return f"{value:,}" if value != "" else ""

        def res(x: dict[str, Any] | None) -> str:
            return "-" if x is None else f"{x['dsp']}/{x['bram18']}/{x['uram']}/{x['lut']:,}"

        lines.append(
            f"| {layer['index']} | {layer['name']} | {layer['op']} | {layer['kernel'] or ''} | "
            f"{_fmt(layer['sparse']['macs'])} | {_fmt(layer['dense']['macs'])} | {cell(s, 'ii_cycles')} | "
            f"{cell(d, 'ii_cycles')} | {cell(s, 'lanes')} | {cell(d, 'lanes')} | {res(s)} | {res(d)} |")
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in report["assumptions"]]
    return "\n".join(lines) + "\n"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2) + "\n"
