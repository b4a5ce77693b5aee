"""Fixed-point error of an HLS design against onnxruntime.

A fixed-point design cannot meet the float tolerance of ``sparsecc check``; what it owes is a small error and
the same decisions. :func:`fixed_point_error` C-simulates the design on seeded random inputs (as ``check``
draws them) and reports, against onnxruntime on the ONNX file: the max and mean absolute error over all
outputs, and the top-1 agreement (argmax of the first output's last axis).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from sparsecc.compiler.errors import SparseccError


@dataclasses.dataclass
class FixedPointReport:
    model: str
    precision: str
    samples: int
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float  # fraction of samples whose first output has the same argmax
    output_range: float  # max |expected| (scale of the errors)
    run_seconds: float

    def lines(self) -> list[str]:
        return [f"{self.model} on hls ({self.precision}): {self.samples} sample(s): max abs error "
                f"{self.max_abs_error:.3g}, mean abs error {self.mean_abs_error:.3g} (outputs up to "
                f"{self.output_range:.3g} in magnitude); top-1 agreement with onnxruntime "
                f"{self.top1_agreement:.1%}"]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_fixed_point(actual: list[np.ndarray], expected: list[np.ndarray]) -> tuple[float, float, float, float]:
    """(max abs error, mean abs error, top-1 agreement, max |expected|) of outputs with a batch axis."""
    errors = [np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64)).reshape(-1)
              for a, e in zip(actual, expected, strict=True)]
    flat = np.concatenate(errors) if errors else np.zeros(1)
    first_a, first_e = np.asarray(actual[0]), np.asarray(expected[0])
    samples = first_e.shape[0]
    top1 = float(np.mean(np.argmax(first_a.reshape(samples, -1), axis=1)
                         == np.argmax(first_e.reshape(samples, -1), axis=1)))
    scale = max(float(np.max(np.abs(e))) for e in expected)
    return float(flat.max()), float(flat.mean()), top1, scale


def fixed_point_error(model_path: str | os.PathLike[str], *, batch: int = 32, seed: int = 0,
                      passes: str | None = None, **options: Any) -> FixedPointReport:
    """Compile ``model_path`` for hls with ``options`` (e.g. ``precision="ap_fixed<16,6>"``) and compare its
    C-simulation with onnxruntime on ``batch`` seeded random samples."""
    from sparsecc.compiler.compare import onnxruntime_session
    from sparsecc.compiler.feeds import random_inputs
    from sparsecc.driver.api import compile as compile_model
    from sparsecc.driver.api import load_module

    if batch < 1:
        raise SparseccError(f"batch must be positive, got {batch}")
    reference = load_module(model_path)
    feeds = random_inputs(reference, batch, seed)
    expected = onnxruntime_session(model_path).run(None, feeds)
    compiled = compile_model(model_path, "hls", passes, **options)
    start = time.perf_counter()
    actual = compiled.run(None, feeds)
    seconds = time.perf_counter() - start
    max_error, mean_error, top1, scale = compare_fixed_point(actual, expected)
    return FixedPointReport(reference.name, str(compiled.options.precision), batch, max_error, mean_error, top1, scale,
                            seconds)
