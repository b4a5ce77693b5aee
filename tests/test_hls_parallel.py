"""The HLS design is the design its estimate describes: lanes in the code = lanes in the estimate; C++14
pedantic-clean sources; a testbench that fails on a wrong expectation; instrumented C-simulation counts; the
HLS CLI flags. Builds go to this session's temporary directories only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import make_model

from sparsecc.compiler.api import compile as compile_model
from sparsecc.compiler.api import load_module
from sparsecc.compiler.check import random_inputs
from sparsecc.compiler.cli import main as cli_main
from sparsecc.compiler.errors import ArtifactError, CompileError
from sparsecc.runtime.hls.csim import CSimulationError, ap_types_include_dir, compile_cpp, run_executable
from sparsecc.targets import hls

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the HLS C-simulation needs g++")

SMALL = "gsc_dense_small1"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hls_parallel_cache")


@pytest.fixture(scope="module")
def small(zoo_onnx, cache: Path) -> hls.HLSModel:
    """A small model with two lanes on every layer that accepts them (built once)."""
    return compile_model(zoo_onnx(SMALL), "hls", lanes=4, csim_cache=cache)


def config_lanes(parameters: str) -> dict[int, int]:
    """layer number -> lanes, parsed from the generated parameters.h (top-level configs)."""
    found = {}
    for block in re.split(r"\n// ---- layer ", parameters)[1:]:
        layer = re.search(r"static constexpr unsigned layer = (\d+);", block)
        lanes = re.search(r"static constexpr unsigned lanes = (\d+);", block)
        if layer and lanes:
            found[int(layer.group(1))] = int(lanes.group(1))
    return found


@pytest.mark.parametrize("options", [{"budget": "u250"}, {"reuse_factor": 4}, {"lanes": 1}])
def test_lanes_in_the_generated_code_are_the_lanes_the_estimate_used(zoo_onnx, cache: Path, options) -> None:
    model = compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", csim_cache=cache, **options)
    report = json.loads(model.source("report/estimate.json"))
    generated = config_lanes(model.source("firmware/parameters.h"))
    used = {layer["index"] - 1: layer["lanes"] for layer in report["layers"]}
    assert generated == {i: n for i, n in used.items() if i in generated}
    assert len(generated) == 4  # conv1, conv2, linear1, output (log-softmax has no config)
    assert report["total"]["sparse"]["lanes"] == {layer["name"]: layer["lanes"] for layer in report["layers"]}
    if options == {"lanes": 1}:
        assert set(generated.values()) == {1}
        conv1 = report["layers"][0]
        assert conv1["stage_cycles"]["mac"] >= 64 * 28 * 28 * 12  # one lane: one MAC per cycle
    else:
        assert max(generated.values()) > 1
        source = model.source("firmware/sparsecc/conv2d.h")
        assert "#pragma HLS UNROLL" in source and "cyclic factor = L" in source


def test_budget_design_fits_its_part_and_is_faster_than_one_lane(zoo_onnx, cache: Path) -> None:
    fixed = "ap_fixed<16,6>"
    one = json.loads(compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", precision=fixed, csim_cache=cache).source(
        "report/estimate.json"))
    fast = json.loads(compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", precision=fixed, budget="zcu104",
                                    csim_cache=cache).source("report/estimate.json"))
    assert fast["total"]["sparse"]["parts"]["zcu104"]["fits"]
    assert fast["total"]["sparse"]["ii_cycles"] < one["total"]["sparse"]["ii_cycles"]


def test_layer_lanes_override_is_checked_against_what_the_layer_accepts(zoo_onnx, cache: Path) -> None:
    path = zoo_onnx("gsc_sparse_cnn")
    model = compile_model(path, "hls", layer_lanes="cnn2_maxpool.MaxPool:8", csim_cache=cache)
    assert config_lanes(model.source("firmware/parameters.h"))[1] == 8
    with pytest.raises(CompileError, match="accepts lanes"):  # 64 output channels: 7 does not divide them
        compile_model(path, "hls", layer_lanes="cnn2_maxpool.MaxPool:7", csim_cache=cache)


def test_constants_never_go_to_uram_buffers_may() -> None:
    from sparsecc.targets.hls.estimate import PARTS_BY_KEY, _memory

    u250 = PARTS_BY_KEY["u250"]
    rom = _memory(8_000_000, 1, u250, rom=True)  # URAM cannot be initialised (UG901): a ROM is BRAM / LUTRAM
    assert rom.uram == 0 and rom.bram18 == -(-8_000_000 // (18 * 1024))
    assert _memory(8_000_000, 1, u250, rom=False).uram > 0
    assert _memory(1000, 1, u250, rom=True).lut == 16 and _memory(1000, 1, u250, rom=True).bram18 == 0


def _gxx(project: dict[str, bytes], root: Path, top: str) -> subprocess.CompletedProcess[str]:
    for relative, content in project.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return subprocess.run(["g++", "-std=c++14", "-pedantic-errors", "-Wall", "-Wextra", "-Werror",
                           "-Wno-unknown-pragmas", "-Wno-unused-label", "-fsyntax-only", "-I", str(root / "firmware"),
                           "-isystem", str(ap_types_include_dir()), str(root / f"{top}_test.cpp"),
                           str(root / "firmware" / f"{top}.cpp"), str(root / "csim" / "bridge.cpp")],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("options", [
    {},
    {"precision": "ap_fixed<16,6>", "interface": "axis", "budget": "u250"},
])
def test_generated_projects_are_pedantic_cxx14(zoo_onnx, cache: Path, tmp_path: Path, options) -> None:
    model = compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", csim_cache=cache, **options)
    result = _gxx(model.files, tmp_path, model.top)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "set cflags {-std=c++14" in model.source("build.tcl")
    code = {p: re.sub(r"//[^\n]*", "", model.source(p)) for p in model.files
            if p.startswith("firmware/") and p.endswith((".h", ".cpp"))}
    assert not [p for p, text in code.items() if "if constexpr" in text or "nullptr" in text]
    assert "std::exp" not in code["firmware/sparsecc/elementwise.h"]  # maths.h: hls:: in synthesis
    assert " input[" not in model.source(f"firmware/{model.top}.h")


def test_fixed_point_outputs_saturate(zoo_onnx, cache: Path) -> None:
    model = compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", precision="ap_fixed<16,6>", csim_cache=cache)
    defines = model.source("firmware/defines.h")
    saturating = re.search(r"typedef ap_fixed<16, 6, AP_TRN, AP_SAT> (\w+);", defines)
    assert saturating and f"typedef {saturating.group(1)} result_t;" in defines, defines
    assert "ap_ufixed<16, 1, AP_RND>" in model.source("firmware/parameters.h")  # boost factors, 32x finer


def test_testbench_passes_on_the_golden_and_fails_on_a_corrupted_one(small: hls.HLSModel, tmp_path: Path) -> None:
    root = small.export(tmp_path / "project")
    top = small.top
    executable = compile_cpp([root / f"{top}_test.cpp", root / "firmware" / f"{top}.cpp"], tmp_path / "build",
                             "testbench", shared=False, include_dirs=[root, root / "firmware"])
    passed = run_executable(executable, [str(root / "tb_data")], stack_mib=256)
    assert "0 mismatched" in passed.stdout and "PASS" in passed.stdout
    golden = root / "tb_data" / "tb_output_predictions.dat"
    rows = golden.read_text().splitlines()
    values = rows[2].split()
    values[3] = repr(float(np.nextafter(np.float32(values[3]), np.float32(np.inf))))  # one ULP off
    rows[2] = " ".join(values)
    golden.write_text("\n".join(rows) + "\n")
    with pytest.raises(CSimulationError, match="exited with status 1"):
        run_executable(executable, [str(root / "tb_data")], stack_mib=256)


def test_instrumented_csim_counts_the_loops_the_estimate_predicts(small: hls.HLSModel, zoo_onnx) -> None:
    feeds = random_inputs(load_module(zoo_onnx(SMALL)), 2, 0)
    profile = small.profile(feeds)
    assert profile["samples"] == 2 and len(profile["layers"]) == len(small.design.layers)
    for layer, entry in zip(small.design.layers, profile["layers"], strict=True):
        assert entry["lanes"] == layer.lanes
        for stage, cycles in entry["estimate"].items():
            data_dependent = stage in ("mac", "scan") and layer.loops.kind not in ("gather", "")
            if not data_dependent:  # everything not decided by the input's zeros is counted exactly as estimated
                assert entry["measured"].get(stage) == cycles, (layer.name, stage, entry)
    assert profile["measured_interval"] > 0


def test_manifest_cannot_choose_the_build_directory(small: hls.HLSModel, tmp_path: Path) -> None:
    root = small.export(tmp_path / "project")
    manifest = json.loads((root / "manifest.json").read_text())
    assert "csim_cache" not in manifest["target_options"]
    manifest["target_options"]["csim_cache"] = str(tmp_path / "elsewhere")
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not choose where a project is built"):
        hls.load_project(root, csim_cache=tmp_path / "cache")
    assert not (tmp_path / "elsewhere").exists()


def test_model_without_conv_or_linear_compiles_with_an_estimate(cache: Path) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 3, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 3, 3])
    model = make_model([onnx.helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y])
    compiled = compile_model(model, "hls", csim_cache=cache)
    report = json.loads(compiled.source("report/estimate.json"))
    assert report["layers"][0]["stage_cycles"] == {"pointwise": 36 + 4}
    assert "Per layer" in compiled.source("report/estimate.md")
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)}
    assert np.array_equal(compiled.run(None, feeds)[0], np.maximum(feeds["x"], 0))


def test_cli_compile_and_check_with_hls_flags(zoo_onnx, tmp_path: Path, capsys) -> None:
    path = str(zoo_onnx(SMALL))
    out = tmp_path / "project"
    cache = tmp_path / "csim"
    assert cli_main(["compile", path, "--target", "hls", "-o", str(out), "-q", "--lanes", "4",
                     "--csim-cache", str(cache)]) == 0
    assert config_lanes((out / "firmware" / "parameters.h").read_text())
    assert json.loads((out / "manifest.json").read_text())["target_options"]["lanes"] == 4
    assert any(cache.iterdir())  # the export's C-simulation (the testbench golden) was built here
    assert cli_main(["check", path, "--target", "hls", "--batches", "2", "-q", "--lanes", "4",
                     "--csim-cache", str(cache)]) == 0
    assert "batch 2: ok" in capsys.readouterr().out
    assert cli_main(["compile", path, "--target", "hls", "-o", str(tmp_path / "bad"), "-q", "--budget", "vu9p"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "budget must be one of zcu104, u250" in error
    assert not (tmp_path / "bad").exists()


def test_sparse_matmul_with_inf_inputs_gives_inf_where_onnxruntime_does(tmp_path: Path, cache: Path) -> None:
    """Zero weights are never multiplied (ELL padding included): a +-inf input yields +-inf wherever the dense
    product does, never a NaN from 0 * inf in a padding slot. (The dense product's own 0 * inf = NaN for units
    with a zero weight is not reproduced: see the HLS README.)"""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((20, 10)).astype(np.float32)
    weight[rng.random(weight.shape) < 0.9] = 0
    weight[0, :] = 0.5  # input 0 meets every unit: padding slots of short ELL rows point at input 0
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 20])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 10])
    model = make_model([onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y],
                       initializers=[onnx.numpy_helper.from_array(weight, "w")])
    path = tmp_path / "mm.onnx"
    onnx.save(model, str(path))
    feed = rng.standard_normal((3, 20)).astype(np.float32)
    feed[:, 0] = [np.inf, -np.inf, np.inf]
    (expected,) = ort.InferenceSession(str(path)).run(None, {"x": feed})
    (actual,) = compile_model(path, "hls", csim_cache=cache).run(None, {"x": feed})
    infinite = np.isinf(expected)
    assert infinite.any()
    assert np.array_equal(actual[infinite], expected[infinite])
