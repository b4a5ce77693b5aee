"""The main job: compile and run a GSC sparse CNN for the host CPU, compared with onnxruntime.

    python -m sparsecc.examples.demo [--model gsc_sparse_cnn] [--out build/demo] [--batches 1,8]

1. exports the zoo model (seeded weights with the real fixed fan-in masks, populated BN statistics and
   k-WTA duty cycles) to ONNX;
2. prints the per-layer sparsity table (``sparsecc stats``);
3. compiles it for the host CPU (llvm target), exports the artifact and loads it back;
4. runs it on random batches next to onnxruntime and compares them tie-aware (DESIGN.md §2);
5. prints a quick latency comparison at batch 1 (the real benchmark is ``sparsecc bench``).

Exits 1 if the outputs disagree.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import sparsecc
from sparsecc.compiler.compare import compare_outputs, find_near_ties, onnxruntime_session
from sparsecc.compiler.cost_model import format_stats
from sparsecc.compiler.errors import SparseccError
from sparsecc.compiler.feeds import random_inputs
from sparsecc.examples.models import zoo


def median_ms(fn: Callable[[], object], repeats: int = 50) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gsc_sparse_cnn", choices=sorted(zoo.ZOO))
    parser.add_argument("--out", default="build/demo", type=Path)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    onnx_path = zoo.export(args.model, args.out / f"{args.model}.onnx")
    print(f"[1] exported {args.model} to {onnx_path}")
    reference = sparsecc.load_module(onnx_path)
    print(f"[2] sparsity of the imported model\n{format_stats(reference)}\n")

    start = time.perf_counter()
    compiled = sparsecc.compile(onnx_path, target="llvm")
    artifact = compiled.export(args.out / f"{args.model}.llvm")
    model = sparsecc.load(artifact)
    print(f"[3] compiled for the host CPU in {time.perf_counter() - start:.1f} s -> {artifact}")
    print(f"    pipeline: {model.manifest.pipeline}\n")

    session = onnxruntime_session(onnx_path)
    ok = True
    print("[4] sparsecc (llvm) against onnxruntime")
    for i, batch in enumerate(int(b) for b in args.batches.split(",")):
        feeds = random_inputs(reference, batch, seed=i)
        result = compare_outputs(model.run(None, feeds), session.run(None, feeds), find_near_ties(reference, feeds))
        ok = ok and result.ok
        print(f"    batch {batch}: {'ok' if result.ok else 'MISMATCH'}: {result.summary()}")

    feeds = random_inputs(reference, 1, seed=0)
    ours = median_ms(lambda: model.run(None, feeds))
    theirs = median_ms(lambda: session.run(None, feeds))
    print(f"\n[5] batch-1 latency (median of 50, this machine, default threads): sparsecc {ours:.3f} ms, "
          f"onnxruntime {theirs:.3f} ms ({theirs / ours:.2f}x); see `sparsecc bench` for the real comparison")
    return 0 if ok else 1


def run_demo(argv: list[str] | None = None) -> int:
    """``main`` with sparsecc's errors (a bad output path, a model it refuses) as one line and exit status 2."""
    try:
        return main(argv)
    except SparseccError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_demo())
