"""``sparsecc check``: compile a model for a target and compare it with onnxruntime on random inputs.

The compiled model is exported to a temporary directory and loaded back, so what is checked is the
artifact a user gets. For each batch size: seeded standard-normal inputs; onnxruntime runs the ONNX file;
the reloaded model runs the same inputs; the reference interpreter runs the imported IR to find k-WTA
near-ties; the outputs are compared tie-aware (:mod:`sparsecc.compiler.compare`). The check passes when
no sample differs without a near-tie and near-ties excuse no more samples than the budget.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .compare import ATOL, RTOL, TIE_RTOL, Comparison, compare_outputs, find_near_ties
from .errors import FrontendError, SparseccError
from .ir.core import Module


@dataclasses.dataclass
class BatchCheck:
    batch: int
    comparison: Comparison
    run_seconds: float


@dataclasses.dataclass
class CheckReport:
    model: str
    target: str
    compile_seconds: float
    batches: list[BatchCheck]

    @property
    def ok(self) -> bool:
        return all(b.comparison.ok for b in self.batches)

    def lines(self) -> list[str]:
        out = [f"{self.model} on {self.target}: compiled in {self.compile_seconds:.1f} s"]
        for b in self.batches:
            verdict = "ok" if b.comparison.ok else "FAIL"
            out.append(f"  batch {b.batch}: {verdict}: {b.comparison.summary()}")
        return out


def random_inputs(module: Module, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs (ints in [0, 10)) for every argument, batch on dynamic axis 0."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in module.func.args:
        shape = tuple(batch if d is None else d for d in arg.type.shape)
        dtype = arg.type.numpy_dtype
        if dtype.kind == "f":
            feeds[arg.name or ""] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name or ""] = rng.random(shape) < 0.5
        else:
            feeds[arg.name or ""] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def onnxruntime_session(model_path: str | os.PathLike[str]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise FrontendError(f"onnxruntime cannot load {model_path}: {str(exc).splitlines()[0]}") from None


def check_model(model_path: str | os.PathLike[str], target: str = "llvm", batches: Sequence[int] = (1, 8), *,
                seed: int = 0, passes: str | None = None, rtol: float = RTOL, atol: float = ATOL,
                tie_rtol: float = TIE_RTOL, progress: Callable[[str], None] | None = None,
                **target_options: Any) -> CheckReport:
    """Compile ``model_path`` for ``target`` (dynamic batch) and compare with onnxruntime per batch size."""
    from .api import compile as compile_model
    from .api import load_module
    from .arguments import MAX_BATCH, check_input_bytes, positive_int

    if isinstance(batches, str | bytes) or not batches:
        raise SparseccError(f"batches must be a non-empty list of batch sizes, got {batches!r}")
    batches = [positive_int(b, "batch size", MAX_BATCH) for b in batches]
    from ..targets import get_target

    require_device = getattr(get_target(target), "require_device", None)
    if require_device is not None:
        require_device()  # say at once, not after compiling, when the device is missing
    reference = load_module(model_path)
    for batch in batches:
        check_input_bytes([(a.type.shape, a.type.numpy_dtype) for a in reference.func.args], batch)
    session = onnxruntime_session(model_path)
    start = time.perf_counter()
    compiled = compile_model(model_path, target, passes, progress=progress, **target_options)
    compile_seconds = time.perf_counter() - start
    results = []
    with tempfile.TemporaryDirectory(prefix="sparsecc-check-") as scratch:
        # what is checked is what a user gets: the artifact exported to disk and loaded back
        from .api import load

        if progress:
            progress("exporting and reloading the artifact")
        reloaded = load(compiled.export(Path(scratch) / "artifact"))
        for i, batch in enumerate(batches):
            feeds = random_inputs(reference, batch, seed + i)
            expected = session.run(None, feeds)
            start = time.perf_counter()
            actual = reloaded.run(None, feeds)
            run_seconds = time.perf_counter() - start
            near = find_near_ties(reference, feeds, tie_rtol)
            comparison = compare_outputs(actual, expected, near, rtol=rtol, atol=atol)
            results.append(BatchCheck(batch, comparison, run_seconds))
    return CheckReport(reference.name, target, compile_seconds, results)
