"""``sparsecc check``: compile a model for a target and compare it with onnxruntime on random inputs.

The compiled model is exported to a temporary directory and loaded back (or uploaded to an RPC device), so
what is checked is the artifact a user gets. For each batch size: seeded standard-normal inputs; onnxruntime
runs the ONNX file; the reloaded model runs the same inputs; the reference interpreter runs the imported IR to
find k-WTA near-ties; the outputs are compared tie-aware (:mod:`sparsecc.compiler.compare`). The check passes
when no sample differs without a near-tie and near-ties excuse no more samples than the budget. A build that
promises IEEE semantics (llvm, cuda and float hls, without ``fast_math``) also runs inputs holding inf, -inf, NaN,
-0.0 and denormals (:func:`sparsecc.compiler.feeds.special_value_inputs`) and must give the interpreter's outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.compare import (
    ATOL,
    RTOL,
    TIE_RTOL,
    Comparison,
    compare_outputs,
    find_near_ties,
    onnxruntime_session,
)
from ..compiler.errors import SparseccError
from ..compiler.feeds import random_inputs, special_value_inputs


@dataclasses.dataclass
class BatchCheck:
    batch: int
    comparison: Comparison
    run_seconds: float


@dataclasses.dataclass
class SpecialValuesCheck:
    """The compiled model on inputs holding inf, -inf, NaN, -0.0 and denormals (one kind per sample),
    compared with the reference interpreter (the executable definition of IEEE behaviour, README 'IEEE
    special values'); ``onnxruntime_agrees``: samples where onnxruntime gives the interpreter's result too
    (it ranks NaN inconsistently in TopK and MaxPool, so it is reported, not required)."""

    kinds: list[str]
    comparison: Comparison
    onnxruntime_agrees: int

    def line(self) -> str:
        verdict = "ok" if self.comparison.ok else "FAIL"
        return (f"  special values ({', '.join(self.kinds[:-1])}; one kind per sample): {verdict} against the "
                f"interpreter: {self.comparison.summary()}; onnxruntime agrees on {self.onnxruntime_agrees} of "
                f"{len(self.kinds)} samples")


@dataclasses.dataclass
class CheckReport:
    model: str
    target: str
    compile_seconds: float
    batches: list[BatchCheck]
    special_values: SpecialValuesCheck | None = None

    @property
    def ok(self) -> bool:
        return all(b.comparison.ok for b in self.batches) and (
            self.special_values is None or self.special_values.comparison.ok)

    def lines(self) -> list[str]:
        out = [f"{self.model} on {self.target}: compiled in {self.compile_seconds:.1f} s"]
        for b in self.batches:
            verdict = "ok" if b.comparison.ok else "FAIL"
            out.append(f"  batch {b.batch}: {verdict}: {b.comparison.summary()}")
        if self.special_values is not None:
            out.append(self.special_values.line())
        return out


def ieee_target(target: str, target_options: dict[str, Any]) -> bool:
    """Whether a build promises the interpreter's results on inf/NaN inputs: llvm and cuda unless ``fast_math``;
    hls for float designs (the default precision) unless ``fast_math`` (ap_fixed has no inf / NaN)."""
    if target_options.get("fast_math", False) in (True, "true", "True", "1"):
        return False
    if target == "hls":
        return str(target_options.get("precision") or "float").strip() == "float"
    return target in ("llvm", "cuda")


def check_model(model_path: str | os.PathLike[str], target: str = "llvm", batches: Sequence[int] = (1, 8), *,
                seed: int = 0, passes: str | None = None, rtol: float = RTOL, atol: float = ATOL,
                tie_rtol: float = TIE_RTOL, progress: Callable[[str], None] | None = None,
                remote: Any = None, **target_options: Any) -> CheckReport:
    """Compile ``model_path`` for ``target`` (dynamic batch) and compare with onnxruntime per batch size.

    ``remote`` (a :class:`sparsecc.runtime.rpc.RemoteOptions`) runs the llvm build on a TVM RPC server or
    tracker; without it, a build for aarch64 on another host runs under the local aarch64 emulator.
    """
    from ..compiler.arguments import MAX_BATCH, check_input_bytes, positive_int
    from ..runtime.rpc import RemoteOptions, emulated
    from .api import compile as compile_model
    from .api import load, load_module

    if isinstance(batches, str | bytes) or not batches:
        raise SparseccError(f"batches must be a non-empty list of batch sizes, got {batches!r}")
    batches = [positive_int(b, "batch size", MAX_BATCH) for b in batches]
    from ..targets import get_target

    remote = remote or RemoteOptions()
    if remote.given and target != "llvm":
        raise SparseccError(f"--rpc/--rpc-tracker apply to --target llvm only, not '{target}'")
    emulate = target == "llvm" and not remote.given and emulated(target_options.get("mtriple"))
    require_device = getattr(get_target(target), "require_device", None)
    if require_device is not None:
        require_device()  # say at once, not after compiling, when the device is missing
    reference = load_module(model_path)
    for batch in batches:
        check_input_bytes([(a.type.shape, a.type.numpy_dtype) for a in reference.func.args], batch)
    session = onnxruntime_session(model_path)
    with contextlib.ExitStack() as stack:
        where, device_session = target, None
        if remote.given:
            from ..runtime.rpc import connect

            device_session = connect(remote)  # unreachable: say so before compiling
            where = f"{target} over TVM RPC at {remote.rpc or f'{remote.rpc_tracker} (key {remote.rpc_key})'}"
        elif emulate:
            from ..runtime.aarch64_emulator import Aarch64Emulator, emulator_problem

            problem = emulator_problem()
            if problem:
                raise SparseccError(f"cannot run code for {target_options['mtriple']} on this host: {problem}")
            if progress:
                progress("starting the aarch64 emulator (TVM RPC server under qemu-aarch64) while compiling")
            emulator = stack.enter_context(Aarch64Emulator())  # starts in the background
        start = time.perf_counter()
        compiled = compile_model(model_path, target, passes, progress=progress, **target_options)
        compile_seconds = time.perf_counter() - start
        if emulate:
            from ..runtime.rpc import connect

            address = emulator.address  # waits until the server listens
            if progress:
                progress(f"aarch64 emulator listening at {address} after {emulator.start_seconds:.0f} s")
            device_session = connect(RemoteOptions(rpc=address))
            where = f"{target} under qemu-aarch64 over TVM RPC"
        if device_session is not None:
            chosen = compiled.manifest.target_options
            where += f" (--mtriple {chosen.get('mtriple')} --mcpu {chosen.get('mcpu')})"
        if device_session is not None:
            from ..runtime.rpc import exported_remote_model

            runner = stack.enter_context(exported_remote_model(compiled, device_session))
        else:  # what is checked is what a user gets: the artifact exported to disk and loaded back
            if progress:
                progress("exporting and reloading the artifact")
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="sparsecc-check-"))
            runner = load(compiled.export(Path(scratch) / "artifact"))
        results = []
        for i, batch in enumerate(batches):
            feeds = random_inputs(reference, batch, seed + i)
            expected = session.run(None, feeds)
            start = time.perf_counter()
            actual = runner.run(None, feeds)
            run_seconds = time.perf_counter() - start
            near = find_near_ties(reference, feeds, tie_rtol)
            results.append(BatchCheck(batch, compare_outputs(actual, expected, near, rtol=rtol, atol=atol),
                                      run_seconds))
        special = None
        if ieee_target(target, target_options):
            feeds, kinds = special_value_inputs(reference, seed + len(batches))
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and 0 * inf are the point here
                near = find_near_ties(reference, feeds, tie_rtol)
                actual = runner.run(None, feeds)
                by_ort = compare_outputs(session.run(None, feeds), near.outputs, rtol=rtol, atol=atol)
            special = SpecialValuesCheck(kinds, compare_outputs(actual, near.outputs, near, rtol=rtol, atol=atol),
                                         len(kinds) - len(by_ort.mismatched))
    return CheckReport(reference.name, where, compile_seconds, results, special)
