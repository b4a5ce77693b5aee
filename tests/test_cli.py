"""The sparsecc command line: each command works, and bad input gives one line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import filecheck, ort_run

from sparsecc.compiler.ir import parse_module
from sparsecc.driver.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsecc.driver.cli", *args], capture_output=True, text=True,
                          timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert pattern in lines[0], lines[0]


def test_import_prints_ir_with_one_kwta_per_layer(zoo_onnx, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(zoo_onnx("gsc_sparse_cnn"))]) == 0
    # GSCSparseCNN's three k-WTA layers (DESIGN.md §3), each one op; no TopK is left; the blobs are elided
    filecheck(capsys.readouterr().out, """
CHECK:      module @gsc_sparse_cnn {
CHECK-NOT:  tensor.topk
CHECK:      {{.*}} = sparse.kwta({{.*}}) {k=4767, over=[1, 2, 3]} : tensor<?x64x28x28xf32, #kwta<k=4767, over=[1, 2, 3]>>
CHECK-NOT:  tensor.topk
CHECK:      {{.*}} = sparse.kwta({{.*}}) {k=800, over=[1, 2, 3]} : tensor<?x64x10x10xf32, #kwta<k=800, over=[1, 2, 3]>>
CHECK-NOT:  tensor.topk
CHECK:      {{.*}} = sparse.kwta({{.*}}) {k=100, over=[1]} : tensor<?x1000xf32, #kwta<k=100, over=[1]>>
CHECK-NOT:  {{tensor.topk|sparse.kwta}}
CHECK:      blobs {
CHECK-NEXT:   {{"[^"]+"}} = elided<{{[0-9]+}} bytes>
""")


def test_import_writes_ir_that_parses_back(zoo_onnx, tmp_path: Path) -> None:
    target = tmp_path / "gsc.sir"
    assert main(["import", str(zoo_onnx("gsc_sparse_cnn")), "-o", str(target)]) == 0
    module = parse_module(target.read_text())
    assert module.name == "gsc_sparse_cnn"


def test_stats_reports_the_gsc_sparse_cnn_numbers(zoo_onnx, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(zoo_onnx("gsc_sparse_cnn"))]) == 0
    out = capsys.readouterr().out
    assert "13,106,400 dense MACs (13.1M)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("cnn", "linear", "output"))]
    densities = [r[3] for r in rows if r[1] in ("nn.conv2d", "nn.linear")]
    assert densities == ["0.480", "0.200", "0.100", "1.000"]
    ks = [int(r[4]) for r in rows if r[1] == "sparse.kwta"]  # k-WTA rows: name, op, shape, in.density, k
    assert ks == [4767, 800, 100]
    reduction = float(out.rsplit("MAC reduction ", 1)[1].rstrip("x\n"))
    assert 8.0 < reduction < 10.0


def test_opt_prints_ir_after_each_pass(zoo_onnx, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opt", str(zoo_onnx("gsc_sparse_cnn")), "--print-ir-after-all", "--timing"]) == 0
    captured = capsys.readouterr()
    # the IR after each pass of the default pipeline, in order (test_passes checks the IR itself), then the
    # final IR is not printed again; the timing table goes to stderr
    filecheck(captured.out, """
CHECK:      // ----- IR after canonicalize -----
CHECK-NEXT: module @{{.*}} {
CHECK:      // ----- IR after fuse-kwta -----
CHECK-NEXT: module @{{.*}} {
CHECK:      {{.*}} = sparse.conv2d({{.*}}) {epilogue=[#epi.kwta<k=800, {{.*}}]} : tensor<?x64x5x5xf32, {{.*}}>
CHECK:      // ----- IR after compress-weights -----
CHECK-NEXT: module @{{.*}} {
CHECK:      // ----- IR after schedule-sparse -----
CHECK-NEXT: module @{{.*}} {
CHECK-NOT:  // ----- IR after
CHECK-NOT:  module @
""")
    filecheck(captured.err, """
CHECK:      pass {{ +}} ms
CHECK-NEXT: canonicalize {{ +[0-9]+\\.[0-9][0-9]}}
CHECK-NEXT: fuse-kwta {{ +[0-9]+\\.[0-9][0-9]}}
CHECK-NEXT: compress-weights {{ +[0-9]+\\.[0-9][0-9]}}
CHECK-NEXT: schedule-sparse {{ +[0-9]+\\.[0-9][0-9]}}
CHECK-NEXT: total {{ +[0-9]+\\.[0-9][0-9]}}
""")


def test_opt_reads_and_writes_textual_ir(zoo_onnx, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "in.sir"
    out = tmp_path / "out.sir"
    assert main(["import", str(zoo_onnx("gsc_dense_small1")), "-o", str(raw)]) == 0
    assert main(["opt", str(raw), "--passes", "canonicalize,fuse-kwta", "-o", str(out)]) == 0
    assert "#epi.relu" in out.read_text()


def test_compile_run_and_reload_in_a_fresh_process(zoo_onnx, tmp_path: Path) -> None:
    artifact = tmp_path / "gsc"
    result = run_cli("compile", str(zoo_onnx("gsc_sparse_cnn")), "--target", "llvm", "-o", str(artifact))
    assert result.returncode == 0, result.stderr
    assert "lowering sparse.conv2d" in result.stderr and "wrote" in result.stderr  # progress is shown
    assert sorted(p.name for p in artifact.iterdir()) == ["manifest.json", "model.so"]
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("run", str(artifact), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("output: float32[2, 12]")
    import sparsecc

    in_process = sparsecc.load(artifact).run(None, {"input": x})[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["output"], in_process)


def test_check_passes_for_a_zoo_model(zoo_onnx, capsys: pytest.CaptureFixture[str]) -> None:
    # the command line only: check_model itself is run on every zoo model in test_llvm.py
    assert main(["check", str(zoo_onnx("gsc_dense_small1")), "--target", "llvm", "--batches", "1,8", "-q"]) == 0
    out = capsys.readouterr().out
    assert "batch 1: ok" in out and "batch 8: ok" in out
    assert "special values (+inf, -inf, NaN, -0.0, denormal; one kind per sample): ok against the interpreter" in out


def test_custom_pass_plugin(zoo_onnx, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = Path(__file__).parents[1] / "examples" / "custom_pass.py"
    assert main(["--plugin", str(plugin), "opt", str(zoo_onnx("gsc_sparse_cnn")), "--passes",
                 "canonicalize,magnitude-prune{density=0.05},layer-report"]) == 0
    captured = capsys.readouterr()
    assert "density=0.05" in captured.out  # the pruned weights' recorded sparsity
    assert "layer report" in captured.err


@pytest.mark.parametrize(("args", "message"), [
    (["import", "/nonexistent/model.onnx"], "model file not found"),
    (["stats", "/nonexistent/model.onnx"], "model file not found"),
    (["opt", "/nonexistent/model.sir"], "IR file not found"),
    (["load-nothing"], "invalid choice"),
    (["compile", "MODEL", "-o", "x", "--target", "fpga"], "invalid choice"),
    (["check", "MODEL", "--batches", "one"], "--batches must be a comma-separated list"),
    (["run", "/nonexistent/artifact", "--random"], "artifact not found"),
])
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], message: str) -> None:
    assert_one_line_error(run_cli(*args), message)


def test_profile_and_bench_take_their_own_options(zoo_onnx) -> None:
    for command in ("profile", "bench"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: sparsecc {command}"), result.stderr
    assert_one_line_error(run_cli("profile", str(zoo_onnx("gsc_dense_small1")), "--runs", "0"), "--runs must be >= 1")
    result = run_cli("profile", str(zoo_onnx("gsc_sparse_cnn")), "--runs", "3")
    assert result.returncode == 0, result.stderr
    # the fused layers show up as the specialised kernels the llvm cost model picked (the linear layer's
    # family depends on this CPU's kernel profile: packed weight-sparse or scatter)
    assert "conv2d_weight_sparse" in result.stdout
    assert "linear_sparse" in result.stdout or "linear_scatter" in result.stdout
    assert "uninstrumented run (median)" in result.stdout


def test_calibrate_generates_for_the_cpu_it_measures(tmp_path: Path) -> None:
    """--mcpu of a smaller ISA than the host's: every kernel is generated for that CPU (host-ISA instructions
    made LLVM abort here before)."""
    import json

    from sparsecc.runtime.host import cannot_execute
    from sparsecc.targets.llvm.cpu import resolve_cpu

    if cannot_execute(resolve_cpu("x86-64-v2").manifest_entry()) is not None:
        pytest.skip("this host cannot run x86-64-v2 code")
    out = tmp_path / "p.json"
    result = run_cli("calibrate", "--quick", "--mcpu", "x86-64-v2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    profile = json.loads(out.read_text())
    assert profile["format"] == "sparsecc-kernel-profile" and profile["name"] == "calibrated-x86-64-v2"
    assert "(sse2)" in profile["measured_on"]


def test_bad_pipeline_and_truncated_model(zoo_onnx, tmp_path: Path) -> None:
    model = zoo_onnx("gsc_dense_small1")
    assert_one_line_error(run_cli("opt", str(model), "--passes", "canonicalize,nope"), "unknown pass 'nope'")
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(Path(model).read_bytes()[:5000])
    assert_one_line_error(run_cli("import", str(truncated)), "truncated or corrupt")


def test_compile_failure_leaves_nothing_behind(zoo_onnx, tmp_path: Path) -> None:
    out = tmp_path / "art"
    result = run_cli("compile", str(zoo_onnx("gsc_dense_small1")), "-o", str(out), "--passes", "bogus")
    assert_one_line_error(result, "unknown pass 'bogus'")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_rejects_wrong_inputs(zoo_onnx, tmp_path: Path) -> None:
    artifact = tmp_path / "a"
    assert main(["compile", str(zoo_onnx("gsc_dense_small1")), "-o", str(artifact), "-q"]) == 0
    np.save(tmp_path / "bad.npy", np.zeros((1, 2, 32, 32), np.float32))
    assert_one_line_error(run_cli("run", str(artifact), "--input", str(tmp_path / "bad.npy")),
                          "input 'input' has shape [1, 2, 32, 32], expected ['?', 1, 32, 32]")
    np.save(tmp_path / "f64.npy", np.zeros((1, 1, 32, 32)))
    assert_one_line_error(run_cli("run", str(artifact), "--input", str(tmp_path / "f64.npy")), "dtype float64")
    assert_one_line_error(run_cli("run", str(artifact), "--input", f"nope={tmp_path / 'f64.npy'}"),
                          "unknown input(s) ['nope']")
    assert_one_line_error(run_cli("run", str(artifact)), "give either --input")


def test_run_random_follows_a_fixed_batch_and_rejects_another(zoo_onnx, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    artifact = tmp_path / "fixed"
    assert main(["compile", str(zoo_onnx("gsc_dense_small1")), "-o", str(artifact), "--batch", "3", "-q"]) == 0
    assert main(["run", str(artifact), "--random"]) == 0
    assert capsys.readouterr().out.startswith("output: float32[3, 12]")
    x = np.random.default_rng(7).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x3.npy", x)
    assert main(["run", str(artifact), "--input", str(tmp_path / "x3.npy"), "-o", str(tmp_path / "y.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["output"],
                               ort_run(zoo_onnx("gsc_dense_small1"), {"input": x})[0], rtol=1e-4, atol=1e-5)
    assert_one_line_error(run_cli("run", str(artifact), "--random", "--batch", "2"),
                          "was compiled for batch 3, not --batch 2")
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 32, 32), np.float32))
    assert_one_line_error(run_cli("run", str(artifact), "--input", str(tmp_path / "x.npy"), "--batch", "3"),
                          "--batch applies to --random only")
