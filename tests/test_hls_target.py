"""The hls target: generated Vitis HLS projects, C-simulated with g++ against hls4ml's ap_types headers.

Every check here compiles real C++ (no mocks). Builds are cached by content in one directory per test session,
so a project compiled for ``check`` is not compiled again when it is exported and loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import GSC_MODELS, make_model

from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.errors import ArtifactError, CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Function, Module, Value
from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
from sparsecc.compiler.ir.types import CSC, ELL, TensorType
from sparsecc.compiler.ir.verifier import verify_module
from sparsecc.driver.api import compile as compile_model
from sparsecc.driver.api import optimize
from sparsecc.driver.check import check_model
from sparsecc.driver.cli import main as cli_main
from sparsecc.driver.hls_accuracy import fixed_point_error
from sparsecc.runtime.hls.csim import compile_cpp, run_executable
from sparsecc.targets import hls
from sparsecc.targets.hls.options import HLSOptions

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the HLS C-simulation needs g++")

#: Kernel-library calls that move data in and out of the top function's ports (not layers).
PORT_CALLS = ("stream_to_array", "array_to_stream", "copy")


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hls_csim_cache")


@pytest.fixture(scope="session")
def gsc_project(zoo_onnx, cache: Path) -> hls.HLSModel:
    """GSCSparseCNN compiled for hls in float (array interface); built once."""
    return compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", csim_cache=cache)


@pytest.fixture(scope="session")
def gsc_exported(gsc_project: hls.HLSModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gsc_project.export(tmp_path_factory.mktemp("hls_export") / "gsc_sparse_cnn")


def top_body(source: str, top: str) -> str:
    start = source.index(f"void {top}(")
    return source[source.index("{", start) + 1 : source.rindex("}")]


def layer_calls(body: str) -> list[str]:
    """The kernel names called in a top function body, ports' data movement excluded."""
    calls = re.findall(r"^\s*sparsecc::(\w+)\s*(?:<[^;]*?>)?\(", body, flags=re.MULTILINE)
    return [c for c in calls if c not in PORT_CALLS]


def parse_arrays(header: str) -> dict[str, list[float]]:
    """``static const T name[..] = {...};`` arrays of a weight header, as flat lists of numbers."""
    arrays = {}
    for match in re.finditer(r"static const [^=]*?\b(\w+)((?:\[\d+\])+) = \{(.*?)\};", header, flags=re.DOTALL):
        values = re.sub(r"//[^\n]*", "", match.group(3)).replace("{", " ").replace("}", " ")
        arrays[match.group(1)] = [float(v.rstrip("f")) for v in values.replace(",", " ").split()]
    return arrays


# ----------------------------------------------------------------------------------------------------------------
# sparsecc check --target hls (float: the llvm tolerance, tie-aware)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GSC_MODELS)
def test_check_passes_in_float_for_gsc_model(name: str, zoo_onnx, cache: Path) -> None:
    start = time.perf_counter()
    report = check_model(zoo_onnx(name), "hls", batches=(1, 8), csim_cache=cache)
    elapsed = time.perf_counter() - start
    print("\n".join(report.lines()), f"\n  generation + csim build + runs: {elapsed:.1f} s")
    assert report.ok, "\n".join(report.lines())
    assert [b.batch for b in report.batches] == [1, 8]
    if name == "gsc_sparse_cnn":
        assert elapsed < 120, f"generation plus C-simulation of GSCSparseCNN took {elapsed:.0f} s"


def test_check_passes_in_float_for_cifar_notsodensenet(zoo_onnx, cache: Path) -> None:
    report = check_model(zoo_onnx("cifar_notsodensenet"), "hls", batches=(1, 2), csim_cache=cache)
    print("\n".join(report.lines()))
    assert report.ok, "\n".join(report.lines())


def test_axis_interface_streams_one_value_per_beat_and_matches(zoo_onnx, cache: Path) -> None:
    path = zoo_onnx("gsc_dense_small1")
    model = compile_model(path, "hls", interface="axis", csim_cache=cache)
    source = model.source(f"firmware/{model.top}.cpp")
    # ports named input / output would be Verilog keywords in the RTL: the generator renames them
    assert f"void {model.top}(hls::stream<input_t>& input_, hls::stream<result_t>& output_)" in source
    assert "#pragma HLS INTERFACE mode=axis port=input_" in source
    assert "sparsecc::stream_to_array<1024>(input_, input_buf);" in source
    assert "sparsecc::array_to_stream<12>(" in source
    report = check_model(path, "hls", batches=(3,), interface="axis", csim_cache=cache)
    assert report.ok, "\n".join(report.lines())


def test_complementary_packing_falls_back_where_it_packs_nothing_and_matches(zoo_onnx, cache: Path) -> None:
    path = zoo_onnx("gsc_sparse_cnn")
    model = compile_model(path, "hls", packing="complementary", pack_size=4, csim_cache=cache)
    calls = layer_calls(top_body(model.source(f"firmware/{model.top}.cpp"), model.top))
    # random fixed-fan-in masks overlap: packing would need more than half as many groups as units (it packs
    # nothing), so every layer keeps its plain format and says why (the complementary kernels themselves are
    # exercised in test_hls_kernels.py)
    assert calls[:3] == ["conv2d_ell", "conv2d_sparse_sparse", "linear_sparse_sparse"]
    assert all("complementary packing does not pay here" in layer.weight_format for layer in model.design.layers[:3])
    report = check_model(path, "hls", batches=(2,), packing="complementary", pack_size=4, csim_cache=cache)
    assert report.ok, "\n".join(report.lines())


# ----------------------------------------------------------------------------------------------------------------
# fixed point: error and top-1 agreement against onnxruntime
# ----------------------------------------------------------------------------------------------------------------


def test_fixed_point_reports_error_and_top1_agreement(zoo_onnx, cache: Path) -> None:
    path = zoo_onnx("gsc_sparse_cnn")
    precision = "ap_fixed<24,8,AP_RND,AP_SAT>"
    report = fixed_point_error(path, precision=precision, batch=32, csim_cache=cache,
                               layer_precision="output.Gemm:ap_fixed<28,10,AP_RND,AP_SAT>")
    print("\n".join(report.lines()))
    assert report.samples == 32 and report.precision == "ap_fixed<24, 8, AP_RND, AP_SAT>"
    assert 0.0 < report.max_abs_error < 0.5
    assert report.mean_abs_error < 0.01
    assert report.top1_agreement >= 0.9
    line = report.lines()[0]
    assert "max abs error" in line and "top-1 agreement" in line
    # check compares a fixed-point design at the float tolerance, unchanged; the design really is fixed point
    strict = check_model(path, "hls", batches=(8,), precision=precision, csim_cache=cache,
                         layer_precision="output.Gemm:ap_fixed<28,10,AP_RND,AP_SAT>")
    comparison = strict.batches[0].comparison
    assert (comparison.rtol, comparison.atol) == (1e-4, 1e-5)
    assert comparison.max_abs_error > 1e-6  # float designs stay below 3e-6 on this model, fixed ones do not


def test_fixed_point_project_stores_raw_words_and_layer_types(zoo_onnx, cache: Path) -> None:
    model = compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", precision="ap_fixed<16,6>",
                          layer_precision="linear_kwinner.Where:ap_fixed<18,8>", csim_cache=cache)
    defines = model.source("firmware/defines.h")
    assert "typedef ap_fixed<16, 6> data_t;" in defines
    assert "typedef ap_fixed<18, 8> linear_kwinner_Where_t;" in defines
    header = model.source("firmware/weights/linear_kwinner_Where.h")
    assert "static const sparsecc::word<ap_fixed<18, 8>, int32_t> linear_kwinner_Where_val[160000]" in header
    conv = model.source("firmware/weights/cnn1_maxpool_MaxPool.h")
    values = parse_arrays(conv)["cnn1_maxpool_MaxPool_val"]
    assert all(v == int(v) for v in values[:50])  # raw integers, not decimals
    source = model.source(f"firmware/{model.top}.cpp")
    assert "linear_kwinner_Where_t linear_kwinner_Where[1000];" in source


# ----------------------------------------------------------------------------------------------------------------
# the project
# ----------------------------------------------------------------------------------------------------------------


def test_project_layout(gsc_exported: Path) -> None:
    top = "gsc_sparse_cnn"
    expected = [
        "manifest.json", "README.md", "build.tcl", f"{top}_test.cpp", f"firmware/{top}.cpp", f"firmware/{top}.h",
        "firmware/defines.h", "firmware/parameters.h", "firmware/sparsecc/sparsecc.h", "firmware/sparsecc/kwta.h",
        "tb_data/tb_input_features.dat", "tb_data/tb_output_predictions.dat", "csim/bridge.cpp",
        "report/estimate.json", "report/estimate.md",
    ]
    for relative in expected:
        assert (gsc_exported / relative).is_file(), relative
    weights = sorted(p.name for p in (gsc_exported / "firmware" / "weights").glob("*.h"))
    assert weights == ["cnn1_maxpool_MaxPool.h", "cnn2_maxpool_MaxPool.h", "linear_kwinner_Where.h", "output_Gemm.h"]
    manifest = json.loads((gsc_exported / "manifest.json").read_text())
    assert manifest["target"] == "hls"
    assert manifest["target_options"]["precision"] == "float"
    assert manifest["target_options"]["interface"] == "array"
    readme = (gsc_exported / "README.md").read_text()
    assert "vitis_hls -f build.tcl" in readme and "g++ -std=c++14" in readme


def test_top_function_has_one_call_per_layer(gsc_project: hls.HLSModel, zoo_onnx) -> None:
    module, _ = optimize(zoo_onnx("gsc_sparse_cnn"))
    layers = [op for op in module.walk() if not isinstance(op, ops.Constant | ops.Reshape)]
    source = gsc_project.source("firmware/gsc_sparse_cnn.cpp")
    body = top_body(source, "gsc_sparse_cnn")
    calls = layer_calls(body)
    assert len(calls) == len(layers) == 5
    prefixes = {"sparse.conv2d": "conv2d_", "sparse.linear": "linear_", "nn.log_softmax": "log_softmax"}
    for op, call in zip(layers, calls, strict=True):
        assert call.startswith(prefixes[op.name]), (op.name, call)
    assert calls == ["conv2d_ell", "conv2d_sparse_sparse", "linear_sparse_sparse", "linear_act_sparse", "log_softmax"]
    for op in layers:  # each call is introduced by a comment naming its layer
        assert f"] {op.results[0].name}: {op.name}" in body
    assert "flatten.Flatten: tensor.reshape to 1600 is a view of cnn2_maxpool_MaxPool" in body


def test_weight_headers_hold_only_the_nonzeros(gsc_project: hls.HLSModel, zoo_onnx) -> None:
    module, _ = optimize(zoo_onnx("gsc_sparse_cnn"))
    weights = {op.results[0].name: op.operand("weight").owner.value for op in module.walk(ops.SparseConv2D)}
    weights.update({op.results[0].name: op.operand("weight").owner.value for op in module.walk(ops.SparseLinear)})
    checked = 0
    for layer, ident in (("cnn1_maxpool.MaxPool", "cnn1_maxpool_MaxPool"),
                         ("cnn2_maxpool.MaxPool", "cnn2_maxpool_MaxPool"),
                         ("linear_kwinner.Where", "linear_kwinner_Where")):
        arrays = parse_arrays(gsc_project.source(f"firmware/weights/{ident}.h"))
        matrix = weights[layer].reshape(weights[layer].shape[0], -1)
        nonzeros = matrix[matrix != 0]
        stored = np.asarray(arrays[f"{ident}_val"], dtype=np.float32)
        assert stored.size == nonzeros.size, layer
        assert np.count_nonzero(stored) == stored.size
        assert np.array_equal(np.sort(stored), np.sort(nonzeros.astype(np.float32)))
        checked += 1
    conv1 = parse_arrays(gsc_project.source("firmware/weights/cnn1_maxpool_MaxPool.h"))
    assert len(conv1["cnn1_maxpool_MaxPool_idx"]) == 64 * 12  # ELL: 12 column indices per filter
    conv2 = parse_arrays(gsc_project.source("firmware/weights/cnn2_maxpool_MaxPool.h"))
    assert len(conv2["cnn2_maxpool_MaxPool_col_ptr"]) == 64 * 25 + 1  # CSC: one pointer per input column
    assert len(conv2["cnn2_maxpool_MaxPool_row_idx"]) == 64 * 320
    assert checked == 3


def test_build_tcl_runs_every_vitis_step_for_the_part(zoo_onnx, cache: Path) -> None:
    model = compile_model(zoo_onnx("gsc_dense_small1"), "hls", part="xczu7ev-ffvc1156-2-e", clock_mhz=200,
                          csim_cache=cache)
    script = model.source("build.tcl")
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert step in script
    assert "set part {xczu7ev-ffvc1156-2-e}" in script and "set clock_mhz 200" in script
    assert "set_top $top" in script and "add_files -tb" in script


def test_estimate_reports_layers_and_totals_sparse_and_dense(gsc_exported: Path) -> None:
    report = json.loads((gsc_exported / "report" / "estimate.json").read_text())
    assert len(report["layers"]) == len(report["dense_layers"]) == 5
    for layer in report["layers"]:
        assert layer["macs"] >= 0 and layer["lanes"] == 1  # the default design has one lane, and says so
        assert layer["ii_cycles"] == max(layer["stage_cycles"].values()) <= layer["latency_cycles"]
        for part in ("u250", "zcu104"):
            assert {"dsp", "bram18", "uram", "lut"} == set(layer["resources"][part])
    conv1, conv2 = report["layers"][:2]
    assert conv1["stage_cycles"]["mac"] >= 64 * 28 * 28 * 12  # 12 MACs per output, one per cycle
    assert conv2["kernel"] == "sparse_sparse" and conv2["macs"] < report["dense_layers"][1]["macs"] / 10
    total = report["total"]
    assert total["mac_reduction"] > 5
    assert total["sparse"]["ii_cycles"] == max(layer["ii_cycles"] for layer in report["layers"])
    assert total["sparse"]["throughput"] == pytest.approx(250e6 / total["sparse"]["ii_cycles"])
    assert total["throughput_ratio"] == pytest.approx(total["dense"]["ii_cycles"] / total["sparse"]["ii_cycles"])
    assert total["throughput_ratio"] > 1
    assert report["assumptions"] and report["seeds_reported_ratios"]
    markdown = (gsc_exported / "report" / "estimate.md").read_text()
    assert "Sparse/dense throughput" in markdown and "U250" in markdown and "ZCU104" in markdown


def test_testbench_compiles_and_passes_on_its_data(gsc_exported: Path, tmp_path: Path) -> None:
    root = gsc_exported
    executable = compile_cpp([root / "gsc_sparse_cnn_test.cpp", root / "firmware" / "gsc_sparse_cnn.cpp"],
                             tmp_path, "testbench", shared=False, include_dirs=[root, root / "firmware"])
    result = run_executable(executable, [str(root / "tb_data")], stack_mib=256)
    assert "4 sample(s)" in result.stdout and "top-1 agreement 4/4, 0 mismatched" in result.stdout


def test_load_runs_the_exported_project_like_the_model(gsc_project: hls.HLSModel, gsc_exported: Path,
                                                      cache: Path) -> None:
    loaded = hls.load_project(gsc_exported, csim_cache=cache)
    assert isinstance(loaded, hls.HLSModel)
    feeds = {"input": np.random.default_rng(5).standard_normal((3, 1, 32, 32)).astype(np.float32)}
    (expected,) = gsc_project.run(None, feeds)
    (actual,) = loaded.run(["output"], feeds)
    assert actual.shape == (3, 12) and actual.dtype == np.float32
    assert np.array_equal(actual, expected)


def test_loading_a_project_whose_source_does_not_compile_quotes_gcc(gsc_exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(gsc_exported, broken)
    top = broken / "firmware" / "gsc_sparse_cnn.cpp"
    top.write_text(top.read_text().replace("sparsecc::log_softmax<12,", "sparsecc::no_such_kernel<12,"))
    with pytest.raises(ArtifactError, match="firmware/gsc_sparse_cnn.cpp has [0-9]+ bytes, the manifest says"):
        hls.load_project(broken, csim_cache=tmp_path / "cache")  # an edited file no longer matches the manifest
    manifest = json.loads((broken / "manifest.json").read_text())
    data = top.read_bytes()  # record the edit in the manifest, as a deliberate change would
    digest = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest["contents"]["firmware/gsc_sparse_cnn.cpp"] = digest
    (broken / "manifest.json").write_text(json.dumps(manifest))
    model = hls.load_project(broken, csim_cache=tmp_path / "cache")
    with pytest.raises(CompileError, match=r"g\+\+ failed to compile 'csim'.*\n.*error"):
        model.run(None, {"input": np.zeros((1, 1, 32, 32), dtype=np.float32)})


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------


def _add_model() -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    return make_model([onnx.helper.make_node("Add", ["x", "x"], ["y"], name="twice")], [x], [y])


def test_unsupported_op_raises_compile_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match=r"no kernel for math\.add"):
        compile_model(_add_model(), "hls")


def test_cli_compile_of_unsupported_model_leaves_no_directory(tmp_path: Path, capsys) -> None:
    model = tmp_path / "add.onnx"
    onnx.save(_add_model(), str(model))
    out = tmp_path / "project"
    assert cli_main(["compile", str(model), "--target", "hls", "-o", str(out), "-q"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "math.add" in error
    assert not out.exists()
    assert not any(p.name.startswith(".project") for p in tmp_path.iterdir())


@pytest.mark.parametrize(("options", "message"), [
    ({"precision": "ap_fixed<16>"}, "is not 'float' or 'ap_fixed<W,I>'"),
    ({"precision": "ap_fixed<80,10>"}, r"width must be in \[2, 64\]"),
    ({"precision": "ap_fixed<16,6,AP_ROUND>"}, "unknown quantisation mode"),
    ({"precision": "float", "layer_precision": "conv:ap_fixed<16,6>"}, "does not mix float and ap_fixed"),
    ({"interface": "axi"}, "interface must be one of array, axis"),
    ({"clock_mhz": 0}, "clock_mhz must be in"),
    ({"frequency": 100}, "unknown hls option"),
])
def test_bad_options_raise_compile_error(options: dict, message: str) -> None:
    with pytest.raises(CompileError, match=message):
        HLSOptions.from_options(options)


def test_unknown_layer_in_layer_precision_lists_the_layers(zoo_onnx, cache: Path) -> None:
    with pytest.raises(CompileError, match=r"unknown layer\(s\) \['conv9'\]; layers: cnn1_maxpool.MaxPool"):
        compile_model(zoo_onnx("gsc_sparse_cnn"), "hls", precision="ap_fixed<16,6>",
                      layer_precision="conv9:ap_fixed<18,8>", csim_cache=cache)


# ----------------------------------------------------------------------------------------------------------------
# epilogue orders, standalone ops and weight formats on a small hand-built module
# ----------------------------------------------------------------------------------------------------------------


def _sparse_weight(rng: np.random.Generator, rows: int, cols: int, fan_in: int) -> np.ndarray:
    matrix = np.zeros((rows, cols), dtype=np.float32)
    for row in range(rows):
        matrix[row, rng.choice(cols, fan_in, replace=False)] = rng.standard_normal(fan_in)
    return matrix


def small_module() -> Module:
    """Branches from one NCHW input that cover every epilogue order and the standalone ops."""
    rng = np.random.default_rng(3)
    x = Value(TensorType((None, 3, 8, 8)), "x")
    func = Function("main", [x])

    def const(array: np.ndarray, name: str, encoding=None) -> Value:
        return func.append(ops.Constant.of(np.asarray(array, dtype=np.float32), encoding=encoding, name=name)).result

    def add(op: ops.Operation) -> Value:
        return func.append(op).result

    w = const(rng.standard_normal((6, 3, 3, 3)), "w")
    b = const(rng.standard_normal(6), "b")
    boost = const(rng.uniform(0.5, 1.5, (1, 6, 1, 1)), "boost")
    conv = {"pads": (1, 1, 1, 1), "kernel": "dense"}
    outputs = {
        "kwta_relu": add(ops.SparseConv2D.create(x, w, bias=b, boost=boost, name="kwta_relu", **conv, epilogue=(
            KWTAStage(90, (1, 2, 3)), ReluStage()))),
        "pool_kwta_relu": add(ops.SparseConv2D.create(x, w, bias=b, boost=boost, name="pool_kwta_relu", **conv,
                                                      epilogue=(MaxPoolStage((2, 2), (2, 2)),
                                                                KWTAStage(25, (1, 2, 3), "break"), ReluStage()))),
        "relu_local_pool": add(ops.SparseConv2D.create(x, w, bias=b, boost=boost, name="relu_local_pool", **conv,
                                                       epilogue=(ReluStage(), KWTAStage(2, (1,)),
                                                                 MaxPoolStage((3, 2), (2, 3))))),
    }
    sparse = add(ops.SparseConv2D.create(x, w, bias=b, boost=boost, name="sparse", strides=(2, 1),
                                         pads=(1, 0, 2, 1), kernel="dense", epilogue=(KWTAStage(40, (1, 2, 3)),)))
    w_csc = const(_sparse_weight(rng, 4, 6 * 9, 10).reshape(4, 6, 3, 3), "w_csc", CSC(10 / 54))
    outputs["scatter"] = add(ops.SparseConv2D.create(sparse, w_csc, name="scatter", kernel="sparse_sparse",
                                                     pads=(1, 1, 1, 1)))
    scale, shift = const(rng.uniform(0.5, 2, 3), "scale"), const(rng.standard_normal(3), "shift")
    affine = add(ops.ChannelAffine.create(x, scale, shift, name="affine"))
    local = add(ops.KWinners.create(affine, k=1, over=(1,), ties="break", name="local"))
    relu = add(ops.Relu.create(local, name="relu"))
    avg = add(ops.AvgPool2D.create(relu, kernel=(2, 2), strides=(2, 2), name="avg"))
    maxp = add(ops.MaxPool2D.create(x, kernel=(2, 2), strides=(2, 2), name="maxp"))
    cat = add(ops.Concat.create([avg, maxp], axis=1, name="cat"))
    gap = add(ops.GlobalAvgPool2D.create(cat, name="gap"))
    flat = add(ops.Reshape.create(gap, shape=(-1, 6), name="flat"))
    w_ell = const(_sparse_weight(rng, 5, 6, 3), "w_ell", ELL(3, 0.5))
    hidden = add(ops.SparseLinear.create(flat, w_ell, name="hidden", kernel="weight_sparse",
                                         epilogue=(KWTAStage(2, (1,), "break"), ReluStage())))
    w_out = const(rng.standard_normal((4, 5)), "w_out")
    logits = add(ops.SparseLinear.create(hidden, w_out, name="logits", kernel="act_sparse"))
    outputs["probs"] = add(ops.Softmax.create(logits, axis=1, name="probs"))
    func.set_outputs(list(outputs.values()), list(outputs))
    module = Module("small", func)
    verify_module(module)
    return module


def test_every_epilogue_order_and_standalone_op_matches_the_interpreter(cache: Path) -> None:
    module = small_module()
    model = hls.compile(module, pipeline="", batch=None, csim_cache=cache)
    config = model.source("firmware/parameters.h")
    assert "static constexpr bool relu_after_kwta = true;" in config
    assert "static constexpr bool pool_before_kwta = true;" in config
    calls = layer_calls(top_body(model.source("firmware/small.cpp"), "small"))
    assert calls == ["conv2d_dense", "conv2d_dense", "conv2d_dense", "conv2d_dense", "conv2d_sparse_sparse", "affine",
                     "kwta", "relu", "avgpool2d", "maxpool2d", "concat_channels", "global_avgpool", "linear_ell",
                     "linear_act_sparse", "softmax"]
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)}
    actual = model.run(None, feeds)
    near = find_near_ties(module, feeds)
    comparison = compare_outputs(actual, near.outputs, near)
    assert comparison.ok, comparison.summary()
    assert np.count_nonzero(actual[0]) <= 4 * 90 and np.all(actual[0] >= 0)


def test_fused_layer_with_non_constant_weight_is_rejected(cache: Path) -> None:
    x = Value(TensorType((None, 4)), "x")
    w = Value(TensorType((3, 4)), "w")
    func = Function("main", [x, w])
    y = func.append(ops.Linear.create(x, w, name="y")).result
    func.set_outputs([y], ["y"])
    with pytest.raises(CompileError, match="weight of nn.linear %y must be a constant"):
        hls.compile(Module("m", func), pipeline="", batch=None, csim_cache=cache)
