"""The lanes of every layer: chosen once, written into the generated configs, read back by the estimate.

Policies (HLS options, one at a time; ``layer_lanes`` overrides any of them per layer):

* ``lanes=L`` (default 1): every layer gets the largest lanes it accepts that is <= L;
* ``reuse_factor=R`` (hls4ml's knob): each multiplier / counter is reused R times along its loop:
  lanes = ceil(loop length / R), the loop being the reduction of a gather, the O rows of a scatter column, the
  values of a global k-WTA -- rounded up to the next value the layer accepts;
* ``target_fps=F``: starting from one lane everywhere, the slowest layer gets its next lanes until the design
  interval reaches clock / F (an error when it cannot);
* ``budget=PART``: the same greedy steps while the estimated resources fit the part (``zcu104``, ``u250``).

The estimate of a lanes choice is :mod:`.estimate`'s (the same functions that report the generated design).
"""

from __future__ import annotations

import math

from sparsecc.compiler.errors import CompileError

from .design import Design, Layer
from .estimate import PARTS_BY_KEY, Resources, interval, layer_resources, stage_cycles
from .options import HLSOptions

#: Most lanes a layer may get.
MAX_LANES = 256


def allowed(layer: Layer) -> list[int]:
    return layer.loops.allowed_lanes(MAX_LANES)


def loop_length(layer: Layer) -> int:
    loops = layer.loops
    if loops.kind == "gather":
        return loops.reduce
    if loops.kind in ("scatter", "column"):
        return loops.rows
    if loops.kwta is not None and not loops.kwta.local:
        return loops.kwta.size
    return 1


def choose_lanes(design: Design, options: HLSOptions) -> dict[str, int]:
    """Lanes per layer name for the design lowered at one lane (see module docstring)."""
    layers = design.layers
    if options.reuse_factor is not None:
        lanes = {}
        for layer in layers:
            want = math.ceil(loop_length(layer) / options.reuse_factor)
            choices = allowed(layer)
            lanes[layer.name] = next((c for c in choices if c >= want), choices[-1])
    elif options.target_fps is not None or options.budget is not None:
        lanes = _greedy(layers, options)
    else:
        lanes = {layer.name: max(c for c in allowed(layer) if c <= options.lanes) for layer in layers}
    by_name = {layer.name: layer for layer in layers}
    for name, value in options.layer_lanes:
        if name not in by_name:
            raise CompileError(f"layer_lanes names unknown layer '{name}'; layers: {', '.join(by_name)}")
        choices = allowed(by_name[name])
        if value not in choices:
            raise CompileError(f"layer_lanes: layer '{name}' accepts lanes {_ranges(choices)}, not {value}")
        lanes[name] = value
    return lanes


def _greedy(layers: list[Layer], options: HLSOptions) -> dict[str, int]:
    lanes = {layer.name: 1 for layer in layers}
    part = PARTS_BY_KEY[options.budget] if options.budget else None
    goal = options.clock_mhz * 1e6 / options.target_fps if options.target_fps else 0.0
    intervals = {layer.name: interval(stage_cycles(layer, 1)) for layer in layers}
    while intervals:
        name = max(intervals, key=lambda n: intervals[n])
        if intervals[name] <= goal:
            return lanes
        layer = next(layer for layer in layers if layer.name == name)
        larger = [c for c in allowed(layer) if c > lanes[name]]
        improved = [c for c in larger if interval(stage_cycles(layer, c)) < intervals[name]]
        if not improved:
            break
        step = improved[0]
        if part is not None:
            total = Resources()
            for other in layers:
                total = total + layer_resources(other, part, step if other.name == name else lanes[other.name])
            if not total.fits(part):
                break
        lanes[name] = step
        intervals[name] = interval(stage_cycles(layer, step))
    if options.target_fps is not None:
        best = max(intervals.values(), default=1)
        raise CompileError(f"target_fps {options.target_fps:g} needs an interval of {goal:,.0f} cycles at "
                           f"{options.clock_mhz:g} MHz; the most lanes the layers accept reach {best:,} cycles "
                           f"({options.clock_mhz * 1e6 / best:,.0f} samples/s)")
    return lanes


def fits(design: Design, budget: str) -> bool:
    """Whether a lowered design's estimated resources fit the part ``budget``."""
    part = PARTS_BY_KEY[budget]
    total = Resources()
    for layer in design.layers:
        total = total + layer_resources(layer, part)
    return total.fits(part)


def _ranges(values: list[int]) -> str:
    if len(values) > 8 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))
