"""Re-state ``benchmarks/results/hls_summary.md`` from instrumented C-simulation runs.

``python -m sparsecc.benchmarks.hls_summary RUN.json ... > hls_summary.md`` where each RUN.json holds, for one
model and one lanes policy, ``{"opts": ..., "estimate_total": ..., "layers": ..., "profile": ...}``: the
compiled design's ``report/estimate.json`` totals and layers, and ``HLSModel.profile(feeds)`` on seeded inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CLOCK_MHZ = 250.0


def _res(r: dict[str, int]) -> str:
    return f"{r['dsp']:,} / {r['bram18']:,} / {r['uram']:,} / {r['lut']:,}"


def section(run: dict[str, Any]) -> list[str]:
    total, profile, opts = run["estimate_total"], run["profile"], run["opts"]
    policy = f"budget {opts['budget'].upper()}" if "budget" in opts else "one lane"
    precision = opts.get("precision", "float")
    sparse, dense = total["sparse"], total["dense"]
    measured = profile["measured_interval"]
    lines = [f"### {profile['model']}, {precision}, {policy}", "",
             f"Lanes per layer: {', '.join(f'`{k}` {v}' for k, v in sparse['lanes'].items())}.", "",
             "| # | layer | lanes | estimate: stage cycles | measured (csim, per sample) | interval est. | "
             "interval meas. |", "|---:|---|---:|---|---|---:|---:|"]
    for layer in profile["layers"]:
        def stages(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in d.items())
        lines.append(f"| {layer['index']} | `{layer['name']}` | {layer['lanes']} | {stages(layer['estimate'])} | "
                     f"{stages(layer['measured'])} | {layer['estimate_interval']:,} | {layer['measured_interval']:,} |")
    ratio = dense["ii_cycles"] / measured
    budget = opts.get("budget")
    if budget and not sparse["parts"][budget]["fits"]:
        verdict = (f"the sparse design does not fit the {budget.upper()} even at one lane: no design for this "
                   f"budget (numbers above: the one-lane design); {ratio:.1f}x over the one-lane dense twin")
    elif budget and not dense["parts"][budget]["fits"]:
        verdict = (f"the dense twin does not fit the {budget.upper()} at all: no dense design to compare on that "
                   f"part; against the one-lane dense twin (which needs a larger part) **{ratio:.1f}x**")
    elif not budget and not dense["parts"]["u250"]["fits"]:
        verdict = f"**{ratio:.1f}x**, against a dense twin that fits neither part (compute only)"
    else:
        verdict = f"**{ratio:.1f}x** (dense interval / measured sparse interval)"
    lines += ["",
              f"- design interval: estimate {sparse['ii_cycles']:,}, measured {measured:,} cycles "
              f"({CLOCK_MHZ * 1e6 / measured:,.0f} samples/s at {CLOCK_MHZ:g} MHz); latency measured "
              f"{profile['measured_latency']:,} cycles",
              f"- resources (DSP / BRAM18 / URAM / LUT): {_res(sparse['parts']['u250']['resources'])} "
              f"(fits ZCU104: {'yes' if sparse['parts']['zcu104']['fits'] else 'no'}, U250: "
              f"{'yes' if sparse['parts']['u250']['fits'] else 'no'})",
              f"- dense twin, same policy (lanes {', '.join(str(v) for v in dense['lanes'].values())}): interval "
              f"{dense['ii_cycles']:,} cycles, {_res(dense['parts']['u250']['resources'])} (fits ZCU104: "
              f"{'yes' if dense['parts']['zcu104']['fits'] else 'no'}, U250: "
              f"{'yes' if dense['parts']['u250']['fits'] else 'no'})",
              f"- sparse/dense throughput: {verdict}", ""]
    return lines


def main(paths: list[str]) -> str:
    lines: list[str] = []
    for path in paths:
        lines += section(json.loads(Path(path).read_text()))
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
