"""Rendering an :class:`~sparsecc.driver.evaluate.Evaluation`: text table, JSON and a PNG plot."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .evaluate import Evaluation

__all__ = ["from_json", "markdown", "merge", "table", "to_json", "write_json", "write_plot"]


def to_json(result: Evaluation) -> dict[str, Any]:
    """Plain data: the run's settings and, per engine, correct counts, accuracy, agreement and noise score."""
    return {
        "model": result.model,
        "data": result.data,
        "samples": result.samples,
        "classes": result.classes,
        "seed": result.seed,
        "levels": result.levels,
        "transform": result.transform,
        "engines": [
            {
                "label": e.label,
                "target": e.target,
                "options": {k: str(v) for k, v in e.options.items()},
                "correct": e.correct,
                "accuracy": [c / result.samples for c in e.correct],
                "agreement_with_onnxruntime": e.agreement,
                "noise_score": e.noise_score,
                "compile_seconds": e.compile_seconds,
                "run_seconds": e.run_seconds,
            }
            for e in result.engines
        ],
    }


def from_json(data: dict[str, Any]) -> Evaluation:
    """The :class:`Evaluation` that :func:`to_json` wrote (predictions are not stored)."""
    from .evaluate import EngineResult, Evaluation

    engines = [EngineResult(e["label"], e["target"], dict(e["options"]), list(e["correct"]),
                            list(e["agreement_with_onnxruntime"]), e["compile_seconds"], e["run_seconds"])
               for e in data["engines"]]
    return Evaluation(data["model"], data["data"], data["samples"], data["classes"], data["seed"],
                      list(data["levels"]), data["transform"], engines)


def merge(results: list[Evaluation]) -> Evaluation:
    """One evaluation with the engines of several runs on the same samples, levels and seed (hence the same
    noisy inputs); engine labels get the model's file stem when the runs are of different models."""
    from .evaluate import EvaluationError

    first = results[0]
    for other in results[1:]:
        if (other.samples, other.levels, other.seed, other.transform) != (first.samples, first.levels, first.seed,
                                                                          first.transform):
            raise EvaluationError(f"cannot merge {other.model} ({other.samples} samples, seed {other.seed}) with "
                                  f"{first.model} ({first.samples} samples, seed {first.seed}): different runs")
    several = len({Path(r.model).stem for r in results}) > 1
    engines, seen = [], set()
    for result in results:
        for engine in result.engines:
            label = f"{Path(result.model).stem}: {engine.label}" if several else engine.label
            if label not in seen:
                seen.add(label)
                engines.append(dataclasses.replace(engine, label=label))
    model = ", ".join(dict.fromkeys(r.model for r in results))
    return dataclasses.replace(first, model=model, engines=engines)


def markdown(result: Evaluation) -> str:
    """A markdown table: accuracy % per level (agreement with onnxruntime % in brackets), noise score row."""
    lines = ["| α | " + " | ".join(e.label for e in result.engines) + " |",
             "|---|" + "---:|" * len(result.engines)]
    for i, alpha in enumerate(result.levels):
        cells = [f"{100 * e.correct[i] / result.samples:.1f}" + ("" if e.target == "onnxruntime" else
                                                                 f" ({100 * e.agreement[i]:.1f})")
                 for e in result.engines]
        lines.append(f"| {alpha:.2f} | " + " | ".join(cells) + " |")
    lines.append("| **noise score** | " + " | ".join(f"**{e.noise_score}**" for e in result.engines) + " |")
    return "\n".join(lines)


def table(result: Evaluation) -> str:
    """Accuracy (and agreement with onnxruntime) per level as rows, one column per engine, then the scores."""
    labels = [e.label for e in result.engines]
    width = max(12, *(len(label) for label in labels))
    header = "alpha " + "".join(f"{label:>{width + 2}}" for label in labels)
    lines = [
        f"{result.model}: {result.samples} samples of {result.data}, {result.classes} classes, seed {result.seed}"
        + (f", transform {result.transform}" if result.transform else ""),
        "accuracy % (top-1 agreement with onnxruntime %)",
        header,
    ]
    for i, alpha in enumerate(result.levels):
        cells = []
        for e in result.engines:
            cell = f"{100 * e.correct[i] / result.samples:.2f} ({100 * e.agreement[i]:.1f})"
            cells.append(f"{cell:>{width + 2}}")
        lines.append(f"{alpha:<5.2f} " + "".join(cells))
    total = len(result.levels) * result.samples
    lines.append("score " + "".join(f"{e.noise_score:>{width + 2}}" for e in result.engines))
    lines.append(f"noise score: correct classifications over {len(result.levels)} levels (of {total})")
    return "\n".join(lines)


def _atomic(path: Path) -> Path:
    if not path.parent.is_dir():
        from .evaluate import EvaluationError

        raise EvaluationError(f"output directory {path.parent} does not exist")
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def write_json(result: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_json` to ``path`` (atomically)."""
    target = Path(path)
    tmp = _atomic(target)
    tmp.write_text(json.dumps(to_json(result), indent=2) + "\n")
    tmp.replace(target)
    return target


def write_plot(result: Evaluation, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Accuracy vs noise level, one line per engine (noise score in the legend); format from the suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = Path(path)
    tmp = _atomic(target)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*Xh<>"
    for i, e in enumerate(result.engines):
        axes.plot(result.levels, [100 * c / result.samples for c in e.correct], marker=markers[i % len(markers)],
                  markersize=4, label=f"{e.label} (score {e.noise_score})")
    axes.set_xlabel("noise level α  (x·(1−α) + α·U(−1, 1))")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(title or f"{Path(result.model).stem}: {result.samples} samples")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(tmp, dpi=120, format=(target.suffix[1:] or "png"))
    finally:
        plt.close(figure)
    tmp.replace(target)
    return target
