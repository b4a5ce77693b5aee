"""GPU check of the cuda target in one command (about 10 minutes on one GPU): ``make gpu-check`` or

    python -m sparsecc.benchmarks.gpu_check [--model gsc_sparse_cnn] [--budget 570] [--out benchmarks/results]

Steps, in order of value (each is skipped, and says so, once the time ``--budget`` is spent):

1. ``nvidia-smi``: GPU name, driver, compute capability; TVM's CUDA runtime must see the device. Without a GPU
   the command prints one line and exits 2.
2. Compile ``--model`` for cuda (symbolic batch) and export it.
3. 50 runs at batch 8 and 50 at batch 1 on one input each: every output must be bitwise identical to the first.
4. ``compute-sanitizer --tool racecheck | synccheck | memcheck`` on one run at batch 1 and at batch 8 (a child
   process loads the artifact and runs it once).
5. Timings at batch 1, 64, 256: end to end (TVM ``time_evaluator``: CUDA events, device buffers, no host
   copies) for sparsecc, TVM's own dense CUDA build of the same ONNX file (Relax ONNX frontend, DLight default
   schedules) and onnxruntime's CUDA provider when it is installed (I/O bound to the GPU); and sparsecc's
   per-kernel times from TVM's Relax VM profiler.
6. Batch 1 compiled with ``cuda_graph=True``: bitwise equal to the plain build, and its latency.
7. ``pytest -m gpu`` on the cuda test files, with what is left of the budget; ``sparsecc check`` on GSCSparseCNN
   only unless ``--pytest-k ''`` (then on every zoo model, several minutes of compiling).

Everything is written to ``cuda.md`` in ``--out`` after every step, so a run cut short still leaves its
results. Exit status: 0 when every step that ran passed, 1 when one failed, 2 when there is no GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("tests/test_cuda.py", "tests/test_cuda_determinism.py")
SANITIZER_TOOLS = ("racecheck", "synccheck", "memcheck")


@dataclasses.dataclass
class Step:
    name: str
    status: str  # PASS, FAIL, SKIP, INFO
    detail: str
    seconds: float


@dataclasses.dataclass
class Report:
    out: Path
    model: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    gpu: str = "unknown"
    timings: list[str] = dataclasses.field(default_factory=list)  # markdown table rows
    profiles: list[str] = dataclasses.field(default_factory=list)  # markdown sections

    def add(self, step: Step) -> None:
        self.steps.append(step)
        print(f"gpu-check: {step.status} {step.name}: {step.detail.splitlines()[0] if step.detail else ''} "
              f"({step.seconds:.0f} s)", file=sys.stderr, flush=True)
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        lines = [f"# cuda target: GPU check ({self.model})", "",
                 f"Written by `python -m sparsecc.benchmarks.gpu_check` on {when}.",
                 f"GPU: {self.gpu}. Host: {platform.node() or 'unknown'}, Python {platform.python_version()}.", "",
                 "| step | result | seconds | detail |", "|---|---|---:|---|"]
        for s in self.steps:
            first = s.detail.splitlines()[0] if s.detail else ""
            lines.append(f"| {s.name} | {s.status} | {s.seconds:.0f} | {first.replace('|', '/')} |")
        if self.timings:
            lines += ["", "## End-to-end time per batch (median of CUDA-event timings, device buffers)", "",
                      "| batch | sparsecc (ms) | TVM dense CUDA (ms) | onnxruntime CUDA (ms) | vs TVM dense | "
                      "vs onnxruntime |", "|---:|---:|---:|---:|---:|---:|", *self.timings]
        lines += self.profiles
        details = [s for s in self.steps if s.detail and "\n" in s.detail]
        if details:
            lines += ["", "## Details"]
            for s in details:
                lines += ["", f"### {s.name}", "", "```", s.detail.strip()[-6000:], "```"]
        (self.out / "cuda.md").write_text("\n".join(lines) + "\n")


def gpu_problem() -> tuple[str | None, str]:
    """(None, description) when an NVIDIA GPU is usable here; else (why not, '')."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi not found (no NVIDIA driver)", ""
    proc = subprocess.run([smi, "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip().splitlines()[:1]}", ""
    from ..compiler.errors import DeviceUnavailableError
    from ..targets.cuda.runtime import cuda_device

    try:
        cuda_device()
    except DeviceUnavailableError as exc:
        return str(exc), ""
    return None, proc.stdout.strip().splitlines()[0]


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _input(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 32, 32)).astype(np.float32)


def step_repeat(report: Report, artifact: Path, runs: int) -> None:
    import sparsecc

    model = sparsecc.load(artifact)
    for batch in (8, 1):
        x = _input(batch, seed=batch)

        def repeat(x: np.ndarray = x) -> int:
            first = model.run(None, {"input": x})[0]
            return sum(not np.array_equal(model.run(None, {"input": x})[0], first) for _ in range(runs - 1))

        differing, seconds = _timed(repeat)
        report.add(Step(f"{runs} runs bitwise, batch {batch}", "PASS" if differing == 0 else "FAIL",
                        f"{differing} of {runs - 1} repeated runs differ from the first", seconds))


def step_sanitizer(report: Report, artifact: Path, tool: str, batch: int) -> None:
    sanitizer = shutil.which("compute-sanitizer")
    if sanitizer is None and shutil.which("nvcc"):
        candidate = Path(shutil.which("nvcc") or "").resolve().parent / "compute-sanitizer"
        sanitizer = str(candidate) if candidate.is_file() else None
    name = f"compute-sanitizer {tool}, batch {batch}"
    if sanitizer is None:
        report.add(Step(name, "SKIP", "compute-sanitizer not found (CUDA toolkit)", 0))
        return
    cmd = [sanitizer, "--tool", tool, "--error-exitcode", "9", "--print-limit", "20", sys.executable, "-m",
           "sparsecc.benchmarks.gpu_check", "--run-once", str(artifact), "--batch", str(batch)]
    proc, seconds = _timed(lambda: subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=240))
    summary = [line for line in proc.stdout.splitlines() if "ERROR SUMMARY" in line or "RACECHECK SUMMARY" in line]
    ok = proc.returncode == 0
    detail = (summary[-1] if summary else f"exit {proc.returncode}") + "\n" + (proc.stdout + proc.stderr)[-3000:]
    report.add(Step(name, "PASS" if ok else "FAIL", detail if not ok else detail.splitlines()[0], seconds))


def step_pytest(report: Report, timeout: float, select: str) -> None:
    files = [str(REPO / f) for f in TEST_FILES if (REPO / f).is_file()]
    if not files:
        report.add(Step("pytest -m gpu", "SKIP", "the test files are not in this installation", 0))
        return
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs", *files,
           *(["-k", select] if select else [])]
    try:
        proc, seconds = _timed(lambda: subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False,
                                                      timeout=timeout))
    except subprocess.TimeoutExpired:
        report.add(Step("pytest -m gpu", "FAIL", f"did not finish within {timeout:.0f} s (the rest of --budget)",
                        timeout))
        return
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    last = tail[-1] if tail else f"exit {proc.returncode}"
    skipped_all = "passed" not in last and "skipped" in last
    status = "PASS" if proc.returncode == 0 and not skipped_all else "FAIL"
    report.add(Step("pytest -m gpu", status, last + ("\n" + "\n".join(tail[-60:]) if status == "FAIL" else ""),
                    seconds))


def _device_timer(vm: Any, dev: Any, args: list[Any]) -> float:
    """Median seconds of ``vm['main'](*args)`` by TVM's time_evaluator (CUDA events on a GPU)."""
    evaluator = vm.time_evaluator("main", dev, number=10, repeat=7, min_repeat_ms=200)
    return float(np.median(evaluator(*args).results))


def _tvm_dense_vm(onnx_path: Path, batch: int, dev: Any) -> Any:
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from ..targets.cuda import ARCHS, _device_compiler, cuda_target, relax_pipeline

    mod = from_onnx(onnx.load(str(onnx_path)), shape_dict={"input": [batch, 1, 32, 32]})
    target = cuda_target()
    with _device_compiler(ARCHS, {}):  # device code through nvcc, as for sparsecc's own build
        executable = relax.build(mod, target=target, relax_pipeline=relax_pipeline(target))
    return relax.VirtualMachine(executable, dev)


def _ort_cuda(onnx_path: Path, x: np.ndarray) -> float | str:
    try:
        import onnxruntime as ort
    except ImportError:
        return "not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "no CUDA provider (onnxruntime-gpu not installed)"
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    binding = session.io_binding()
    binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")
    session.run_with_iobinding(binding)
    times = []
    for _ in range(50):
        binding.synchronize_inputs()
        start = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def step_timings(report: Report, artifact: Path, onnx_path: Path, batches: list[int], deadline: float) -> None:
    import tvm
    from tvm import relax

    from ..runtime import read_manifest
    from ..targets.cuda.runtime import cuda_device

    dev = cuda_device()
    library = artifact / read_manifest(artifact).files["library"]
    lib = tvm.runtime.load_module(str(library))
    for batch in batches:
        if time.monotonic() > deadline:
            report.add(Step(f"timings, batch {batch}", "SKIP", "time budget spent", 0))
            continue
        start = time.perf_counter()
        x = tvm.runtime.tensor(_input(batch), dev)
        vm = relax.VirtualMachine(lib, dev)
        ours = _device_timer(vm, dev, [x])
        try:
            dense: float | str = _device_timer(_tvm_dense_vm(onnx_path, batch, dev), dev, [x])
        except Exception as exc:  # a peer failing is a result, not a crash of the check
            dense = f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
        try:
            ort_time = _ort_cuda(onnx_path, _input(batch))
        except Exception as exc:
            ort_time = f"failed: {type(exc).__name__}"

        def ms(v: float | str) -> str:
            return f"{v * 1e3:.3f}" if isinstance(v, float) else v

        def ratio(v: float | str, ours: float = ours) -> str:
            return f"{v / ours:.2f}x" if isinstance(v, float) else "-"

        report.timings.append(f"| {batch} | {ms(ours)} | {ms(dense)} | {ms(ort_time)} | {ratio(dense)} | "
                              f"{ratio(ort_time)} |")
        profiler = relax.VirtualMachine(lib, dev, profile=True)
        profiler.profile("main", x)  # warm-up
        table = str(profiler.profile("main", x).table(sort=True, aggregate=True))
        report.profiles += ["", f"## sparsecc per-kernel times, batch {batch} (Relax VM profiler)", "", "```",
                            table.strip(), "```"]
        report.add(Step(f"timings, batch {batch}", "INFO", f"sparsecc {ms(ours)} ms, TVM dense {ms(dense)} ms, "
                        f"onnxruntime CUDA {ms(ort_time)} ms", time.perf_counter() - start))


def step_cuda_graph(report: Report, onnx_path: Path, batch: int = 1) -> None:
    """Batch ``batch`` compiled with ``cuda_graph=True``: the same bits as without, and its time."""
    import tvm

    import sparsecc

    from ..targets.cuda.runtime import cuda_device

    dev = cuda_device()
    start = time.perf_counter()
    graph = sparsecc.compile(onnx_path, target="cuda", batch=batch, cuda_graph=True)
    plain = sparsecc.compile(onnx_path, target="cuda", batch=batch)
    x = _input(batch, seed=3)
    same = all(np.array_equal(graph.run(None, {"input": x})[0], plain.run(None, {"input": x})[0]) for _ in range(5))
    args = [tvm.runtime.tensor(x, dev)]
    with_graph = _device_timer(graph._machine(), dev, args)
    without = _device_timer(plain._machine(), dev, args)
    report.add(Step(f"CUDA graph, batch {batch}", "PASS" if same else "FAIL",
                    f"{'bitwise equal to' if same else 'DIFFERS from'} the plain build; {with_graph * 1e6:.1f} us "
                    f"with the graph, {without * 1e6:.1f} us without", time.perf_counter() - start))


def run_once(artifact: Path, batch: int) -> int:
    """The sanitizer's child: load the artifact, run it once."""
    import sparsecc

    out = sparsecc.load(artifact).run(None, {"input": _input(batch)})[0]
    print(f"ran batch {batch}: output {out.shape}, finite {bool(np.isfinite(out).all())}")
    return 0


def check(args: argparse.Namespace) -> int:
    problem, gpu = gpu_problem()
    if problem is not None:
        print(f"gpu-check: no GPU: {problem}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.budget
    report = Report(args.out, args.model, gpu=gpu)
    report.add(Step("driver", "PASS", gpu, 0))
    import sparsecc
    from sparsecc.examples.models import zoo

    with tempfile.TemporaryDirectory(prefix="sparsecc-gpu-check-") as tmp:
        onnx_path = zoo.export(args.model, Path(tmp) / f"{args.model}.onnx", seed=0)
        artifact = Path(tmp) / "artifact"
        try:
            (model, seconds) = _timed(lambda: sparsecc.compile(onnx_path, target="cuda"))
            model.export(artifact)
        except Exception as exc:
            report.add(Step("compile for cuda", "FAIL", f"{type(exc).__name__}: {exc}", 0))
            return 1
        report.add(Step("compile for cuda", "PASS", f"kernels: {', '.join(model.manifest.target_options['kernels'])}",
                        seconds))
        steps: list[tuple[str, Any]] = [("repeat", lambda: step_repeat(report, artifact, args.runs))]
        steps += [(f"sanitizer {t} {b}", lambda t=t, b=b: step_sanitizer(report, artifact, t, b))
                  for b in (1, 8) for t in SANITIZER_TOOLS]
        steps.append(("timings", lambda: step_timings(report, artifact, onnx_path, args.batches, deadline)))
        steps.append(("CUDA graph", lambda: step_cuda_graph(report, onnx_path)))
        steps.append(("pytest", lambda: step_pytest(report, max(60.0, deadline - time.monotonic()), args.pytest_k)))
        for name, step in steps:
            if time.monotonic() > deadline:
                report.add(Step(name, "SKIP", "time budget spent", 0))
                continue
            try:
                step()
            except Exception as exc:  # record and go on: one broken step must not hide the others
                report.add(Step(name, "FAIL", f"{type(exc).__name__}: {exc}", 0))
    print(f"gpu-check: wrote {args.out / 'cuda.md'}", file=sys.stderr)
    return 1 if any(s.status == "FAIL" for s in report.steps) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gsc_sparse_cnn", help="a zoo model with a (B, 1, 32, 32) input")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 64, 256])
    parser.add_argument("--budget", type=float, default=570.0, help="seconds before remaining steps are skipped")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--pytest-k", default="not check_passes_on_gpu or gsc_sparse_cnn",
                        help="pytest -k selection of the GPU tests ('' for all: check compiles every zoo model)")
    parser.add_argument("--run-once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_once is not None:
        return run_once(args.run_once, args.batch)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
