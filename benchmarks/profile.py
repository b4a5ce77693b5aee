"""Where the time goes: per-kernel times of a model compiled for the llvm target.

    sparsecc profile MODEL.onnx [--batch 1] [--runs 200] [--passes P]

Instruments the Relax VM: every call instruction (a sparsecc kernel, a TVM-generated generic kernel, or a VM
builtin such as an allocation) is timed between the VM's before/after callbacks, over ``--runs`` runs after
a warm-up, and reported as medians with their share of the total. The callbacks themselves cost about a
microsecond each, so the sum is a little above the uninstrumented time (also reported).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..compiler.cli import CliParser
from ..compiler.errors import SparseccError


def profile(model_path: str | Path, batch: int = 1, runs: int = 200, passes: str | None = None,
            mcpu: str | None = None, mattr: str | None = None) -> tuple[list[tuple[str, float, int]], float]:
    """[(function, median microseconds per run, calls per run)] sorted by time, and the median total."""
    import tvm
    from tvm import relax

    import sparsecc
    from sparsecc.compiler.check import random_inputs

    compiled = sparsecc.compile(model_path, target="llvm", batch=batch, passes=passes, mcpu=mcpu, mattr=mattr)
    reference = sparsecc.load_module(model_path)
    feeds = random_inputs(reference, batch, seed=0)
    args = [tvm.runtime.tensor(x) for x in compiled.check_feeds(feeds)]
    vm = relax.VirtualMachine(compiled._executable, tvm.cpu())
    main = vm["main"]
    totals = []
    for _ in range(max(3, runs // 4)):
        start = time.perf_counter()
        main(*args)
        totals.append(time.perf_counter() - start)
    samples: dict[str, list[float]] = defaultdict(list)
    per_run: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    started: dict[str, float] = {}

    def instrument(func: object, symbol: str, before: bool, ret: object, *rest: object) -> int:
        if before:
            started[symbol] = time.perf_counter()
        else:
            per_run[symbol] += time.perf_counter() - started.pop(symbol)
            calls[symbol] += 1
        return 0

    vm.set_instrument(tvm.runtime.convert(instrument) if hasattr(tvm.runtime, "convert") else instrument)
    for run in range(runs + 1):
        per_run.clear()
        main(*args)
        if run:  # the first instrumented run is a warm-up
            for symbol, seconds in per_run.items():
                samples[symbol].append(seconds)
    rows = [(symbol, float(np.median(times)) * 1e6, calls[symbol] // (runs + 1)) for symbol, times in samples.items()]
    rows.sort(key=lambda r: -r[1])
    return rows, float(np.median(totals)) * 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparsecc profile`` (also ``python -m sparsecc.benchmarks.profile``)."""
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--passes")
    parser.add_argument("--mcpu", help="CPU to compile for (default: this host; it must run here)")
    parser.add_argument("--mattr", help="CPU feature overrides, e.g. '-avx512f'")


def run(args: argparse.Namespace) -> int:
    """Profile and print the per-kernel table; bad option values raise SparseccError."""
    for flag in ("batch", "runs"):
        if getattr(args, flag) < 1:
            raise SparseccError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    rows, total = profile(args.model, args.batch, args.runs, args.passes, args.mcpu, args.mattr)
    summed = sum(us for _, us, _ in rows)
    print(f"{'function':<64} {'us/run':>9} {'share':>7} {'calls':>6}")
    for symbol, us, n in rows:
        print(f"{symbol[:64]:<64} {us:>9.1f} {us / summed:>7.1%} {n:>6}")
    print(f"{'sum of instrumented calls':<64} {summed:>9.1f}")
    print(f"{'uninstrumented run (median)':<64} {total:>9.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="sparsecc profile", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SparseccError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
