"""CPU benchmark: sparsecc (llvm) side by side with onnxruntime and TVM's own dense build, in one run.

    python -m sparsecc.benchmarks.cpu [--models a,b] [--batches 1,64] [--threads 1,2] [--out benchmarks/results]
    sparsecc bench [same options]

For each thread count a worker process runs (so that TVM's thread pool and onnxruntime's intra-op threads
are set before either starts), and for each zoo model and batch size it times, on the same random input:

* **onnxruntime**: the exported ONNX file, ``intra_op_num_threads`` = threads, all graph optimisations;
* **TVM dense**: the same ONNX file through TVM's Relax ONNX frontend and its default build pipeline (what a
  user gets from TVM without tuning), batch fixed;
* **sparsecc**: the llvm target with the default pipeline, batch fixed.

onnxruntime and sparsecc are timed in alternating rounds (each round runs both, ~20 ms each; the medians over
rounds are reported; both get about ``--seconds`` each), so that the slow phases of a shared machine, which last
seconds, hit both alike; TVM dense is timed on its own (median of repeated runs). The table reports ratios
measured in the same run. sparsecc's
outputs are compared with onnxruntime's (tie-aware) before it is timed: a wrong kernel is never reported.
Results go to ``cpu-ISA.md`` (table), ``cpu-ISA.json`` (raw numbers) and ``cpu-ISA.png`` (chart) in ``--out``,
one set per ISA class of the generated code (``--mcpu haswell`` on an AVX-512 host measures the AVX2 code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.arguments import MAX_BATCH, positive_int_list, positive_seconds
from ..compiler.errors import CliParser, SparseccError

ENGINES = ("onnxruntime", "tvm_dense", "sparsecc")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        else:
            name = platform.processor()
    except OSError:
        name = platform.processor()
    import tvm

    llvm_cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    return f"{name} (LLVM: {llvm_cpu}), {os.cpu_count()} cores"


def interleaved_medians(runners: dict[str, Callable[[], object]], budget: float,
                        round_seconds: float = 0.02) -> dict[str, tuple[float, int]]:
    """Median seconds per call of each runner, timed in alternating rounds: each round calls every runner
    (as many times as fill ``round_seconds``, at least once) and records its time per call, so slow phases of a
    shared machine (they last seconds: other tenants, clocks) hit every engine alike. Rounds: as many as fit in
    ``budget`` seconds (3..200). Returns name -> (median seconds, calls made)."""
    first = {}
    for name, fn in runners.items():
        start = time.perf_counter()
        fn()  # warm-up, and the first estimate of its time
        first[name] = max(time.perf_counter() - start, 1e-6)
    calls = {name: max(1, int(round_seconds / t)) for name, t in first.items()}
    per_round = sum(calls[name] * first[name] for name in runners)
    rounds = int(min(200, max(3, budget / per_round)))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - start) / calls[name])
    return {name: (float(np.median(times[name])), rounds * calls[name]) for name in runners}


def median_seconds(fn: Callable[[], object], budget: float) -> tuple[float, int]:
    """Median time of ``fn`` after one warm-up; as many runs as fit in ``budget`` seconds (3..500)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    repeats = int(min(500, max(3, budget / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), repeats


def _ort_runner(path: Path, threads: int, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def _tvm_dense_runner(path: Path, feeds: dict[str, np.ndarray], cpu: dict[str, Any]) -> Callable[[], object]:
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from ..runtime.native_stderr import filtered_native_stderr
    from ..targets.llvm import host_target

    mod = from_onnx(onnx.load(str(path)), shape_dict={k: list(v.shape) for k, v in feeds.items()})
    with filtered_native_stderr():
        executable = tvm.compile(mod, target=host_target(**cpu))
        vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(v) for v in feeds.values()]
    return lambda: vm["main"](*args)


def worker(models: list[str], batches: list[int], threads: int, budget: float, onnx_dir: Path,
           cpu: dict[str, Any], fast_math: bool = False) -> list[dict[str, Any]]:
    """Measure every engine on every model and batch size in this process (threads already configured)."""
    import sparsecc
    from sparsecc.compiler.cost_model import layer_costs
    from sparsecc.examples.models import zoo

    rows = []
    for name in models:
        path = onnx_dir / f"{name}.onnx"
        if not path.exists():
            zoo.export(name, path)
        reference = sparsecc.load_module(path)
        costs = layer_costs(reference)
        dense_macs = sum(c.dense_macs for c in costs)
        sparse_macs = sum(c.sparse_macs for c in costs)
        for batch in batches:
            try:
                rows.append(_measure(path, name, batch, threads, budget, reference, dense_macs, sparse_macs, cpu,
                                     fast_math))
            except Exception as exc:  # record it and go on: one model must not cost the whole run
                print(f"  {name} batch {batch} threads {threads}: FAILED: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
                rows.append({"model": name, "batch": batch, "threads": threads,
                             "error": f"{type(exc).__name__}: {exc}"})
    return rows


def _measure(path: Path, name: str, batch: int, threads: int, budget: float, reference: Any, dense_macs: int,
             sparse_macs: float, cpu: dict[str, Any], fast_math: bool = False) -> dict[str, Any]:
    """One row of the table: every engine on one model and batch size."""
    import sparsecc
    from sparsecc.compiler.compare import compare_outputs, find_near_ties, onnxruntime_session
    from sparsecc.compiler.feeds import random_inputs

    feeds = random_inputs(reference, batch, seed=batch)
    row: dict[str, Any] = {"model": name, "batch": batch, "threads": threads, "dense_macs": dense_macs,
                           "sparse_macs": sparse_macs, "mac_reduction": dense_macs / sparse_macs}
    compiled = sparsecc.compile(path, target="llvm", batch=batch, fast_math=fast_math, **cpu)
    near = find_near_ties(reference, feeds)
    check = compare_outputs(compiled.run(None, feeds), onnxruntime_session(path).run(None, feeds), near)
    if not check.ok:
        raise RuntimeError(f"{name} batch {batch}: sparsecc disagrees with onnxruntime: {check.summary()}")
    # onnxruntime and sparsecc alternate round by round (their ratio is the result); TVM's untuned dense build,
    # 10-100x slower, is timed on its own
    paired = interleaved_medians({
        "onnxruntime": _ort_runner(path, threads, feeds),
        "sparsecc": lambda compiled=compiled, feeds=feeds: compiled.run(None, feeds),
    }, 2 * budget)
    for engine, (seconds, repeats) in paired.items():
        row[engine] = {"ms": seconds * 1e3, "repeats": repeats}
    seconds, repeats = median_seconds(_tvm_dense_runner(path, feeds, cpu), budget)
    row["tvm_dense"] = {"ms": seconds * 1e3, "repeats": repeats}
    print(f"  {name} batch {batch} threads {threads}: " + ", ".join(
        f"{e} {row[e]['ms']:.3f} ms" for e in ENGINES), file=sys.stderr, flush=True)
    return row


def _speedup(row: dict[str, Any], engine: str = "sparsecc") -> float:
    return row["onnxruntime"]["ms"] / row[engine]["ms"]


def write_report(rows: list[dict[str, Any]], out: Path, machine: str, isa: str) -> None:
    """``cpu-ISA.md/.json/.png``: one table per ISA class of the code measured (avx512, avx2, sse2, neon)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cpu-{isa}"
    (out / f"{stem}.json").write_text(json.dumps({"machine": machine, "isa": isa, "rows": rows}, indent=1) + "\n")
    lines = [
        "# CPU benchmark: sparsecc (llvm) vs onnxruntime vs TVM dense",
        "",
        f"Machine: {machine}; code generated for the {isa} ISA class. Produced by `sparsecc bench`; each time is",
        "a median after a warm-up, all engines measured in the same run on the same input (onnxruntime and",
        "sparsecc in alternating rounds).",
        "Speedups are onnxruntime time / engine time. MAC reduction is the theoretical dense / sparse-sparse MAC",
        "ratio (`sparsecc stats`); effective GMAC/s counts only the non-zero (sparse-sparse) MACs.",
        "",
        "| model | batch | threads | onnxruntime ms | TVM dense ms | sparsecc ms | sparsecc samples/s | "
        "speedup vs ORT | TVM dense vs ORT | MAC reduction | sparsecc eff. GMAC/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["threads"], r["model"], r["batch"])):
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | failed: {r['error'][:80]} |")
            continue
        ms = r["sparsecc"]["ms"]
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['threads']} | {r['onnxruntime']['ms']:.3f} | "
            f"{r['tvm_dense']['ms']:.3f} | {ms:.3f} | {r['batch'] / ms * 1e3:,.0f} | {_speedup(r):.2f}x | "
            f"{_speedup(r, 'tvm_dense'):.2f}x | {r['mac_reduction']:.1f}x | "
            f"{r['sparse_macs'] * r['batch'] / (ms * 1e-3) / 1e9:.2f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _chart(rows, out / f"{stem}.png", f"{machine}, {isa}")


def _chart(rows: list[dict[str, Any]], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    configs = sorted({(r["threads"], r["batch"]) for r in rows})
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(configs), 1, figsize=(11, 3.2 * len(configs)), squeeze=False)
    for ax, (threads, batch) in zip(axes[:, 0], configs, strict=True):
        subset = {r["model"]: r for r in rows if r["threads"] == threads and r["batch"] == batch}
        x = np.arange(len(models))
        width = 0.38
        ax.bar(x - width / 2, [_speedup(subset[m]) if m in subset else 0 for m in models], width, label="sparsecc")
        ax.bar(x + width / 2, [_speedup(subset[m], "tvm_dense") if m in subset else 0 for m in models], width,
               label="TVM dense")
        ax.scatter(x, [subset[m]["mac_reduction"] if m in subset else 0 for m in models], color="black",
                   marker="_", s=400, label="MAC reduction", zorder=3)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("speedup vs onnxruntime")
        ax.set_title(f"batch {batch}, {threads} thread(s)")
        ax.set_xticks(x, models, rotation=20, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(f"sparsecc llvm vs onnxruntime and TVM dense — {machine}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparsecc bench`` (also ``python -m sparsecc.benchmarks.cpu``)."""
    parser.add_argument("--models", help="comma-separated zoo names (default: the whole zoo)")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--mcpu", help="CPU to generate code for (default: this host; it must run here), e.g. "
                        "haswell on an AVX-512 host to measure the AVX2 code")
    parser.add_argument("--mattr", help="CPU feature overrides, e.g. '-avx512f'")
    parser.add_argument("--fast-math", action="store_true",
                        help="compile sparsecc without its IEEE guards (to measure what they cost)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (or, with the hidden ``--worker``, one thread count of it); bad options raise
    SparseccError."""
    from ..examples.models import zoo

    models = [m for m in args.models.split(",") if m] if args.models else list(zoo.ZOO)
    unknown = sorted(set(models) - set(zoo.ZOO))
    if unknown:
        raise SparseccError(f"unknown model(s) {unknown}; zoo: {', '.join(zoo.ZOO)}")
    batches = positive_int_list(args.batches, "--batches", MAX_BATCH)
    thread_counts = positive_int_list(args.threads, "--threads", 4096)
    positive_seconds(args.seconds, "--seconds")
    if not getattr(args, "worker", False) and not args.out.parent.is_dir():
        raise SparseccError(f"--out: directory {args.out.parent} does not exist")
    from ..runtime.host import cannot_execute
    from ..targets.llvm.cpu import resolve_cpu

    target_cpu = resolve_cpu(args.mcpu, None, args.mattr)
    problem = cannot_execute(target_cpu.manifest_entry())
    if problem:
        raise SparseccError(f"bench measures on this host: {problem}")
    cpu = {"mcpu": args.mcpu, "mattr": args.mattr}
    if getattr(args, "worker", False):
        rows = worker(models, batches, int(args.threads), args.seconds, args.onnx_dir, cpu, args.fast_math)
        args.json.write_text(json.dumps(rows))
        return 0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sparsecc-bench-") as tmp:
        onnx_dir = Path(tmp)
        for threads in thread_counts:
            out_json = onnx_dir / f"rows-{threads}.json"
            env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
            cmd = [sys.executable, "-m", "sparsecc.benchmarks.cpu", "--worker", "--threads", str(threads),
                   "--models", ",".join(models), "--batches", args.batches, "--seconds", str(args.seconds),
                   "--onnx-dir", str(onnx_dir), "--json", str(out_json)]
            for name in ("mcpu", "mattr"):
                if getattr(args, name):
                    cmd += [f"--{name}", getattr(args, name)]
            if args.fast_math:
                cmd.append("--fast-math")
            print(f"measuring with {threads} thread(s)", file=sys.stderr, flush=True)
            subprocess.run(cmd, env=env, check=True)
            rows.extend(json.loads(out_json.read_text()))
    machine = f"{cpu_model()}; code for {target_cpu.describe()}"
    write_report(rows, args.out, machine, target_cpu.isa)
    print(f"wrote {args.out}/cpu-{target_cpu.isa}.md (.json, .png)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="sparsecc bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SparseccError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
