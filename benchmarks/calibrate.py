"""Measure this CPU's kernel crossovers and write a kernel profile (``sparsecc calibrate``).

Each crossover is found by timing the two competing llvm kernels on the same synthetic layer (fixed fan-in
weights, inputs with the given fraction of active units) over a range of densities, alternating the two round
by round and taking medians (one thread). The profile records, per decision, the largest density at which the
sparse kernel was still faster:

* ``conv_weight_sparse_max``: tap-list conv vs dense conv, over weight density (a GSC conv2-like layer);
* ``conv_act_sparse_ratio``: activation-sparse conv vs tap-list conv, over input activity on weights of density
  ``CALIBRATION_DENSITY`` (the crossover activity divided by that density: the two kernels' costs scale with
  activity and with weight density);
* ``linear_scatter_max``: scatter (CSC) linear vs packed weight-sparse linear, over input activity.

``sparsecc compile --profile FILE`` then plans with it. ``--quick`` uses small layers and few rounds (seconds; for
tests and a first look, not for decisions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import SparseccError
from ..compiler.ir.layer import ConvGeometry, LinearGeometry
from ..compiler.kernel_profile import BUILTIN, CALIBRATION_DENSITY, KernelProfile, profile_for


def _fixed_fan_in(rng: np.random.Generator, shape: tuple[int, ...], density: float) -> np.ndarray:
    rows, cols = shape[0], int(np.prod(shape[1:]))
    keep = max(1, round(density * cols))
    w = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        w[r, rng.choice(cols, keep, replace=False)] = rng.standard_normal(keep).astype(np.float32)
    return w.reshape(shape)


def _active(rng: np.random.Generator, shape: tuple[int, ...], fraction: float) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x * (rng.random(shape) < fraction)


def _timer(kernel: Any, x: np.ndarray, out_shape: tuple[int, ...], target: Any) -> Callable[[], object]:
    import tvm

    from ..targets.llvm.build import run_isolated
    from ..targets.llvm.kernels.common import Kernel

    assert isinstance(kernel, Kernel)
    with tempfile.TemporaryDirectory(prefix="sparsecc-calibrate-") as tmp:
        library = Path(tmp) / f"{kernel.name}.so"

        def job() -> None:  # in a forked child: an LLVM abort becomes a CompileError, not a dead process
            tvm.compile(tvm.IRModule({kernel.name: kernel.prim_func}), target=target).export_library(str(library))

        run_isolated(job, f"code generation of {kernel.name}")
        lib = tvm.runtime.load_module(str(library))  # mapped: the file may go
    func = lib[kernel.name]
    args = [tvm.runtime.tensor(x), *(tvm.runtime.tensor(c) for c in kernel.constants),
            tvm.runtime.tensor(np.zeros(out_shape, np.float32))]
    return lambda: func(*args)


def _race(a: Callable[[], object], b: Callable[[], object], rounds: int, calls: int = 5) -> tuple[float, float]:
    """Median seconds per call of a and b, alternating (noise hits both alike). The kernels run one sample on
    the calling thread, so the clock is that thread's CPU time: time spent preempted by other processes on a
    busy machine does not count."""
    a()
    b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, times in ((a, ta), (b, tb)):
            start = time.thread_time()
            for _ in range(calls):
                fn()
            times.append((time.thread_time() - start) / calls)
    return float(np.median(ta)), float(np.median(tb))


def _crossover(points: Sequence[float], sparse_wins: Callable[[float], bool]) -> float:
    """The largest point (ascending) up to which the sparse kernel kept winning; 0 when it never did."""
    best = 0.0
    for p in points:
        if not sparse_wins(p):
            break
        best = p
    return best


def calibrate(mcpu: str | None = None, mattr: str | None = None, quick: bool = False,
              log: Callable[[str], None] | None = None) -> KernelProfile:
    """Measure the crossovers on this host (or for ``mcpu``, which must run here) and return the profile."""
    from ..runtime.host import cannot_execute
    from ..targets.llvm.cpu import resolve_cpu
    from ..targets.llvm.kernels.common import isa_scope
    from ..targets.llvm.kernels.conv_dense import conv2d_dense
    from ..targets.llvm.kernels.conv_sparse_sparse import conv2d_sparse_sparse
    from ..targets.llvm.kernels.conv_weight_sparse import conv2d_weight_sparse
    from ..targets.llvm.kernels.linear import linear_scatter, linear_sparse

    cpu = resolve_cpu(mcpu, None, mattr)
    problem = cannot_execute(cpu.manifest_entry())
    if problem:
        raise SparseccError(f"calibrate measures on this host: {problem}")
    target = cpu.tvm_target()
    rng = np.random.default_rng(0)
    rounds = 5 if quick else 25
    c, hw, o, k = (8, 10, 16, 3) if quick else (64, 14, 64, 5)
    n_in, n_out = (256, 128) if quick else (1600, 1000)
    say = log or (lambda _: None)

    with isa_scope(cpu.isa):  # the kernels are generated for the CPU measured, not for the host's ISA
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        out = (1, o, hw - k + 1, hw - k + 1)

        def conv_weight_sparse_wins(density: float) -> bool:
            w = _fixed_fan_in(rng, (o, c, k, k), density)
            geometry = ConvGeometry((c, hw, hw), w.shape)
            t_sparse, t_dense = _race(_timer(conv2d_weight_sparse(geometry, w, None), x, out, target),
                                      _timer(conv2d_dense(geometry, w, None), x, out, target), rounds)
            say(f"conv weight density {density:.2f}: tap-list {t_sparse * 1e6:.0f} us, dense {t_dense * 1e6:.0f} us")
            return t_sparse < t_dense

        w_conv = _fixed_fan_in(rng, (o, c, k, k), CALIBRATION_DENSITY)

        def conv_act_sparse_wins(activity: float) -> bool:
            xa = _active(rng, (1, c, hw, hw), activity)
            geometry = ConvGeometry((c, hw, hw), w_conv.shape)
            t_act, t_ws = _race(_timer(conv2d_sparse_sparse(geometry, w_conv, None), xa, out, target),
                                _timer(conv2d_weight_sparse(geometry, w_conv, None), xa, out, target), rounds)
            say(f"conv input activity {activity:.2f}: activation-sparse {t_act * 1e6:.0f} us, "
                f"tap-list {t_ws * 1e6:.0f} us")
            return t_act < t_ws

        w_lin = _fixed_fan_in(rng, (n_out, n_in), 0.1)
        scatter = linear_scatter(LinearGeometry(n_in, n_out), w_lin, None)
        packed = linear_sparse(LinearGeometry(n_in, n_out), w_lin, None)

        def linear_scatter_wins(activity: float) -> bool:
            xa = _active(rng, (1, n_in), activity)
            t_scatter, t_packed = _race(_timer(scatter, xa, (1, n_out), target), _timer(packed, xa, (1, n_out), target),
                                        rounds)
            say(f"linear input activity {activity:.2f}: scatter {t_scatter * 1e6:.1f} us, "
                f"packed {t_packed * 1e6:.1f} us")
            return t_scatter < t_packed

        base = BUILTIN[profile_for("llvm", cpu.isa)]
        densities = (0.1, 0.2, 0.33, 0.5, 0.7) if not quick else (0.2, 0.5)
        activities = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2) if not quick else (0.03, 0.2)
        lin_activities = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8) if not quick else (0.1, 0.3)
        return KernelProfile(
            name=f"calibrated-{cpu.mcpu}",
            dense_above=base.dense_above,
            act_sparse_below=base.act_sparse_below,
            conv_weight_sparse_max=_crossover(densities, conv_weight_sparse_wins),
            conv_short_reduction=base.conv_short_reduction,
            conv_act_sparse_ratio=round(_crossover(activities, conv_act_sparse_wins) / CALIBRATION_DENSITY, 4),
            linear_scatter_max=_crossover(lin_activities, linear_scatter_wins),
            measured_on=f"{cpu.mcpu} ({cpu.isa}), 1 thread, {time.strftime('%Y-%m-%d')}"
                        + (" (quick)" if quick else ""),
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparsecc calibrate``."""
    parser.add_argument("-o", "--output", type=Path, required=True, help="profile file to write (.json)")
    parser.add_argument("--mcpu", help="CPU to generate code for (default: this host; it must run here)")
    parser.add_argument("--mattr", help="CPU feature overrides, e.g. '-avx512f'")
    parser.add_argument("--quick", action="store_true", help="small layers, few rounds (seconds; not for decisions)")


def run(args: argparse.Namespace) -> int:
    out: Path = args.output
    if out.suffix != ".json":
        raise SparseccError(f"--output must name a .json file, got {out}")
    if not out.parent.is_dir():
        raise SparseccError(f"output directory {out.parent} does not exist")
    if out.exists() and not out.is_file():
        raise SparseccError(f"{out} exists and is not a file")
    profile = calibrate(args.mcpu, args.mattr, args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(profile.to_json(), indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}: conv weight-sparse up to density {profile.conv_weight_sparse_max}, activation-sparse conv "
          f"up to activity {profile.conv_act_sparse_ratio:.3g} x weight density, scatter linear up to "
          f"{profile.linear_scatter_max} active",
          file=sys.stderr)
    return 0
