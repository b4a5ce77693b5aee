"""IEEE special values (inf, -inf, NaN, -0.0, denormals): the interpreter's rules against onnxruntime and ONNX's
reference evaluator, and every llvm kernel family against the interpreter (README, 'IEEE special values')."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from support import make_model, ort_run
from torch import nn

import sparsecc
from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.feeds import special_value_inputs
from sparsecc.compiler.interpreter import interpret, kwta, pool2d
from sparsecc.compiler.ir import Module, ops
from sparsecc.compiler.ir.types import KWTABound
from sparsecc.compiler.passes import Pass, Rewriter, parse_pipeline
from sparsecc.driver.api import load_module, optimize
from sparsecc.examples.models.layers import KWinners, KWinners2d, SparseWeights, SparseWeights2d
from sparsecc.frontends.onnx.importer import import_onnx
from sparsecc.frontends.torch import export as export_module

SPECIALS = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40, -3e-39, 1.5, -2.0, 0.0, 7.0, -0.5, 3.0], np.float32)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """NaN at the same places, equal infinities, finite values within float32 rounding (-0.0 == 0.0)."""
    return a.shape == b.shape and bool(np.all(np.isclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True)))


def _vi(name: str, shape: list[int], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, dtype, shape)


def _interpret(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):
        return interpret(import_onnx(model), feeds)


# -- the reference: the interpreter against onnxruntime, op by op --------------------------------------------
def _single_op_models() -> list[tuple[str, onnx.ModelProto, np.ndarray]]:
    rng = np.random.default_rng(5)
    w_conv = rng.integers(-2, 3, (3, 2, 2, 2)).astype(np.float32) * (rng.random((3, 2, 2, 2)) < 0.5)
    w_lin = rng.integers(-2, 3, (5, 12)).astype(np.float32) * (rng.random((5, 12)) < 0.4)
    x4 = rng.permutation(np.tile(SPECIALS, 4)).reshape(1, 2, 4, 6)
    x2 = np.stack([rng.permutation(SPECIALS) for _ in range(4)])
    stats = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((np.array([1.5, 0.5]), "s"), (np.array([0.1, -0.2]), "b"), (np.array([0.3, -1.0]), "m"),
              (np.array([2.0, 0.5]), "v"))]
    return [
        ("Relu", make_model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [4, 12])], [_vi("y", [4, 12])]), x2),
        ("Conv with zero weights", make_model(
            [oh.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[2, 2])], [_vi("x", [1, 2, 4, 6])],
            [_vi("y", [1, 3, 3, 5])], [numpy_helper.from_array(w_conv, "w")]), x4),
        ("Gemm with zero weights", make_model(
            [oh.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)], [_vi("x", [4, 12])], [_vi("y", [4, 5])],
            [numpy_helper.from_array(w_lin, "w"), numpy_helper.from_array(np.ones(5, np.float32), "c")]), x2),
        ("MatMul with zero weights", make_model(
            [oh.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [4, 12])], [_vi("y", [4, 5])],
            [numpy_helper.from_array(np.ascontiguousarray(w_lin.T), "w")]), x2),
        ("LogSoftmax", make_model([oh.make_node("LogSoftmax", ["x"], ["y"], axis=1)], [_vi("x", [4, 12])],
                                  [_vi("y", [4, 12])]), x2),
        ("Softmax", make_model([oh.make_node("Softmax", ["x"], ["y"], axis=1)], [_vi("x", [4, 12])],
                               [_vi("y", [4, 12])]), x2),
        ("BatchNormalization", make_model(
            [oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], [_vi("x", [1, 2, 4, 6])],
            [_vi("y", [1, 2, 4, 6])], stats), x4),
    ]


@pytest.mark.parametrize("index", range(7), ids=[name for name, _, _ in _single_op_models()])
def test_interpreter_gives_onnxruntimes_special_values_op_by_op(index: int) -> None:
    _, model, x = _single_op_models()[index]
    (expected,) = ort_run(model, {"x": x})
    (got,) = _interpret(model, {"x": x})
    assert np.isnan(expected).any() or np.isinf(expected).any()  # the case is not vacuous
    assert _same(got, expected), f"interpreter {got}\nonnxruntime {expected}"


def test_maxpool_window_holding_a_nan_is_nan_and_the_others_match_onnxruntime() -> None:
    """onnxruntime's MaxPool keeps or drops a NaN depending on where it sits in the window; the interpreter's
    rule is NaN for any window holding one (numpy's max)."""
    x = np.array([[[[np.nan, 1, np.inf, 1, -np.inf, 1, 1, 2], [2, 3, 0, 0, 2, -0.0, 3, np.nan]]]], np.float32)
    model = make_model([oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                       [_vi("x", [1, 1, 2, 8])], [_vi("y", [1, 1, 1, 4])])
    (got,) = _interpret(model, {"x": x})
    (ort,) = ort_run(model, {"x": x})
    assert _same(got[0, 0, 0], np.array([np.nan, np.inf, 2, np.nan], np.float32))
    assert _same(got[0, 0, 0, 1:3], ort[0, 0, 0, 1:3])


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ranks_nan_above_inf_like_onnxs_reference_evaluator(largest: int) -> None:
    """onnxruntime's TopK orders NaN inconsistently; the interpreter follows ONNX's reference evaluator (and
    numpy, torch.topk): NaN ranks above +inf, equal values keep the lower index first."""
    from onnx.reference import ReferenceEvaluator

    rows = np.array([[1, np.nan, 3, 2, -np.inf], [np.nan, 5, np.nan, 1, 0], [np.inf, 1, np.nan, -np.inf, np.inf],
                     [-0.0, 0.0, -0.0, 1, np.nan]], np.float32)
    model = make_model([oh.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)], [_vi("x", [4, 5])],
                       [_vi("v", [4, 3]), _vi("i", [4, 3], TensorProto.INT64)],
                       [numpy_helper.from_array(np.array([3], np.int64), "k")])
    ref_values, ref_indices = ReferenceEvaluator(model).run(None, {"x": rows})
    values, indices = _interpret(model, {"x": rows})
    assert _same(values, ref_values) and np.array_equal(indices, ref_indices), (values, indices, ref_indices)


def test_kwta_ranks_nan_first_and_a_nan_threshold_keeps_every_unit() -> None:
    x = np.array([[np.nan, 1, 5, -np.inf, 2], [np.nan, np.nan, np.nan, 4, 3]], np.float32)
    keep = kwta(x, None, 2, (1,), "keep")
    assert _same(keep, np.array([[np.nan, 0, 5, 0, 0], [np.nan, np.nan, np.nan, 4, 3]], np.float32))
    broken = kwta(x, None, 2, (1,), "break")
    assert _same(broken, np.array([[np.nan, 0, 5, 0, 0], [np.nan, np.nan, 0, 0, 0]], np.float32))


# -- the llvm slow-path kernels against the interpreter ------------------------------------------------------
def test_exact_kwta_and_maxpool_kernels_give_the_interpreters_special_values() -> None:
    import tvm

    from sparsecc.targets.llvm.cpu import resolve_cpu
    from sparsecc.targets.llvm.ieee import finite_guard, kwta_exact, maxpool_exact

    rng = np.random.default_rng(2)
    boost = rng.uniform(0.5, 2, 4).astype(np.float32)
    cases = [("global_keep", False, "keep", boost), ("local_break", True, "break", None)]
    funcs = {name: kwta_exact((4, 3, 3), 2 if local else 7, boost, local, ties == "break", name)
             for name, local, ties, boost in cases}
    funcs["pool"] = maxpool_exact((4, 3, 3), 2, "pool")
    funcs["finite"] = finite_guard((4, 3, 3), "finite")
    lib = tvm.compile(tvm.IRModule(funcs), target=resolve_cpu().tvm_target())
    x = rng.integers(-3, 4, (3, 4, 3, 3)).astype(np.float32)
    x[0, 0, 0, :2] = np.nan
    x[1, 1, 1, 1], x[1, 2, 0, 0], x[2, 1, 2, 2] = np.inf, -np.inf, -0.0
    x[2, :, 0, 0] = np.nan  # k or more NaN in a group
    for name, local, ties, boost in cases:
        y = tvm.runtime.tensor(np.zeros_like(x))
        lib[name](tvm.runtime.tensor(x), *([tvm.runtime.tensor(boost)] if boost is not None else []), y)
        want = kwta(x, None if boost is None else boost.reshape(1, 4, 1, 1), 2 if local else 7,
                    (1,) if local else (1, 2, 3), ties)
        assert _same(y.numpy(), want), (name, local, ties)
    y = tvm.runtime.tensor(np.zeros((3, 4, 1, 1), np.float32))
    lib["pool"](tvm.runtime.tensor(x), y)
    assert _same(y.numpy(), pool2d(x, (2, 2), (2, 2), (0, 0, 0, 0), False, "max"))
    for value in (np.inf, -np.inf, np.nan, -0.0, 1e-40, 2.0):
        for position in (0, 17, 107):  # vector body, tail
            z = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
            z.reshape(-1)[position] = value
            ok = tvm.runtime.tensor(np.zeros((), bool))
            lib["finite"](tvm.runtime.tensor(z), ok)
            assert bool(ok.numpy()) == bool(np.isfinite(z).all()), (value, position)


# -- every llvm kernel family on special values --------------------------------------------------------------
def _conv_first() -> nn.Module:
    """conv (70% zero weights) -> local k-WTA -> max-pool -> linear (70% zeros) -> k-WTA -> linear."""
    return nn.Sequential(SparseWeights2d(nn.Conv2d(3, 8, 3, padding=1), 0.7),
                         KWinners2d(8, 0.4, k_inference_factor=1.0, local=True), nn.MaxPool2d(2), nn.Flatten(),
                         SparseWeights(nn.Linear(128, 32), 0.7), KWinners(32, 0.25, k_inference_factor=1.0),
                         nn.Linear(32, 10))


def _kwta_first() -> nn.Module:
    """global k-WTA -> conv -> global k-WTA -> max-pool -> linear -> k-WTA -> linear (activation-sparse inputs)."""
    return nn.Sequential(KWinners2d(3, 0.4, k_inference_factor=1.0), SparseWeights2d(nn.Conv2d(3, 8, 3), 0.7),
                         KWinners2d(8, 0.2, k_inference_factor=1.0), nn.MaxPool2d(2), nn.Flatten(),
                         SparseWeights(nn.Linear(72, 32), 0.7), KWinners(32, 0.25, k_inference_factor=1.0),
                         nn.Linear(32, 10))


@dataclasses.dataclass(frozen=True)
class _ActivationSparseKernels(Pass):
    """Give every layer whose input has a k-WTA bound the kernel that skips zero activations."""

    name = "test-activation-sparse-kernels"

    def apply(self, module: Module) -> None:
        rewriter = Rewriter(module.func)
        for op in module.walk((ops.SparseConv2D, ops.SparseLinear)):
            if isinstance(op.operand("input").type.encoding, KWTABound):  # type: ignore[union-attr]
                kernel = {"dense": "act_sparse", "weight_sparse": "sparse_sparse"}[op.attr("kernel")]
                rewriter.set_attrs(op, kernel=kernel)


def _pipeline(fmt: str, act_sparse: bool, fuse: bool = True) -> list:
    text = (f"canonicalize,{'fuse-kwta,' if fuse else ''}compress-weights{{format={fmt},target=llvm}},"
            "schedule-sparse{target=llvm,act_sparse_below=0}")
    return [*parse_pipeline(text), *([_ActivationSparseKernels()] if act_sparse else [])]


#: family -> (model, pipeline, the kernels its layers must get, in order)
FAMILIES = {
    "dense, standalone k-WTA": (_conv_first, _pipeline("dense", False, fuse=False), ["dense", "dense", "dense"]),
    "weight-sparse, fused epilogues": (_conv_first, _pipeline("ell", False),
                                       ["weight_sparse", "weight_sparse", "weight_sparse"]),
    "activation-sparse": (_kwta_first, _pipeline("dense", True), ["act_sparse", "act_sparse", "act_sparse"]),
    "sparse-sparse (tap lists, scatter)": (_kwta_first, _pipeline("ell", True),
                                           ["sparse_sparse", "sparse_sparse", "sparse_sparse"]),
}


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sparsecc.examples.models.zoo import _calibrate

    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for make in (_conv_first, _kwta_first):
            model = make()
            _calibrate(model, (3, 8, 8))
            path = tmp_path_factory.mktemp("ieee") / f"{make.__name__}.onnx"
            out[make.__name__] = export_module(model, path, (3, 8, 8), opset=17, dynamic_batch=True)
    return out


def _special_check(path: Path, model, seed: int = 1):
    reference = load_module(path)
    feeds, _ = special_value_inputs(reference, seed, per_sample=2)
    with np.errstate(invalid="ignore", over="ignore"):
        near = find_near_ties(reference, feeds)
        got = model.run(None, feeds)
    return compare_outputs(got, near.outputs, near), near.outputs


@pytest.mark.parametrize("family", FAMILIES)
def test_every_llvm_kernel_family_gives_the_interpreters_special_values(family: str, family_models) -> None:
    make, pipeline, kernels = FAMILIES[family]
    path = family_models[make.__name__]
    module, _ = optimize(path, pipeline, target="llvm")
    chosen = [op.attr("kernel") for op in module.walk() if op.name in ("sparse.conv2d", "sparse.linear")]
    assert chosen == kernels
    model = sparsecc.compile(path, "llvm", pipeline)
    comparison, expected = _special_check(path, model)
    assert np.isnan(expected[0]).any()  # specials reach the output: the check is not vacuous
    assert comparison.ok, comparison.summary()
    # the matrix: each kind of special value (one per sample) separately
    reference = load_module(path)
    feeds, kinds = special_value_inputs(reference, 1, per_sample=2)
    with np.errstate(invalid="ignore", over="ignore"):
        cells = _cells(reference, [family], model.run(None, feeds), feeds, kinds)
    assert all(cells.values()) and len(cells) == 6, cells


def test_fast_math_drops_the_guard_is_recorded_and_can_differ(family_models) -> None:
    path = family_models["_conv_first"]
    pipeline = FAMILIES["weight-sparse, fused epilogues"][1]
    fast = sparsecc.compile(path, "llvm", pipeline, fast_math=True)
    assert fast.manifest.target_options["fast_math"] is True
    differs = 0
    for seed in range(1, 6):
        comparison, _ = _special_check(path, fast, seed)
        differs += len(comparison.mismatched)
    assert differs > 0  # skipped 0 x inf: the guard is what makes the default build exact


def test_fast_math_must_be_a_bool(family_models) -> None:
    with pytest.raises(CompileError, match="fast_math must be True or False"):
        sparsecc.compile(family_models["_conv_first"], "llvm", fast_math="yes")


def test_special_value_feeds_hold_every_kind() -> None:
    module = load_module(make_model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", ["n", 40])], [_vi("y", ["n", 40])]))
    feeds, kinds = special_value_inputs(module, seed=0)
    x = feeds["x"]
    assert kinds[:5] == ["+inf", "-inf", "NaN", "-0.0", "denormal"] and x.shape == (6, 40)
    assert (x[0] == np.inf).sum() == 2 and (x[1] == -np.inf).sum() == 2 and np.isnan(x[2]).sum() == 2
    assert np.signbit(x[3][x[3] == 0]).sum() == 2 and ((np.abs(x[4]) < 1.2e-38) & (x[4] != 0)).sum() == 2
    assert np.isinf(x[5]).sum() == 2 and np.isnan(x[5]).sum() == 1



@pytest.mark.parametrize("target", ["llvm", "hls", pytest.param("cuda", marks=pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="the cuda target needs nvcc to compile"))])
def test_a_weight_holding_inf_is_one_compile_error_naming_the_layer(target: str, tmp_path: Path) -> None:
    w = np.ones((4, 6), np.float32)
    w[2, 3] = np.inf
    model = make_model([oh.make_node("Gemm", ["x", "w"], ["y"], transB=1, name="fc")], [_vi("x", ["n", 6])],
                       [_vi("y", ["n", 4])], [numpy_helper.from_array(w, "w")])
    options = {"csim_cache": tmp_path} if target == "hls" else {}
    with pytest.raises(CompileError, match=rf"sparse.linear.*the weight of %y holds inf or NaN; the {target} target"):
        sparsecc.compile(model, target, **options)


def test_ap_fixed_inputs_wrap_or_saturate_special_values(tmp_path: Path) -> None:
    """An ap_fixed design's input port has the model precision's C type (``input_t``); what becomes of
    inf, -inf, NaN, -0.0, a denormal and 1e6 is the ap_types conversion, compiled as C-simulation does:
    AP_WRAP (the default) gives 0 for all of them, AP_SAT clamps to the range (NaN to its top)."""
    import subprocess

    from sparsecc.runtime.hls.csim import ap_types_include_dir
    from sparsecc.targets.hls.precision import parse_precision

    wrap, sat = (parse_precision(p).ctype() for p in ("ap_fixed<16,6>", "ap_fixed<16,6,AP_RND,AP_SAT>"))
    source = tmp_path / "convert.cpp"
    source.write_text(
        "#include <cmath>\n#include <cstdio>\n#include \"ap_fixed.h\"\n"
        "int main() {\n"
        "    const float values[] = {INFINITY, -INFINITY, NAN, -0.0f, 1e-40f, 1e6f, 1.5f};\n"
        f"    for (float v : values) std::printf(\"%.17g %.17g\\n\", {wrap}(v).to_double(), {sat}(v).to_double());\n"
        "}\n")
    subprocess.run(["g++", "-std=c++14", "-I", str(ap_types_include_dir()), str(source), "-o",
                    str(tmp_path / "convert")], check=True)
    out = subprocess.run([str(tmp_path / "convert")], capture_output=True, text=True, check=True).stdout
    rows = [[float(v) for v in line.split()] for line in out.splitlines()]
    top = 32 - 2**-10
    assert [r[0] for r in rows] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5]
    assert [r[1] for r in rows] == [top, -32.0, top, 0.0, 0.0, top, 1.5]


# -- the IEEE matrix: (target, kernel family, special value) -> the interpreter's result -------------------------
def _cells(module_or_path, names: list[str], actual: list[np.ndarray], feeds: dict[str, np.ndarray],
           kinds: list[str]) -> dict[tuple[str, str], bool]:
    """Per (output = kernel family, kind of special value = sample): does the target give the interpreter's
    result (tie-aware)?"""
    with np.errstate(invalid="ignore", over="ignore"):
        near = find_near_ties(module_or_path, feeds)
    cells = {}
    for name, got, want in zip(names, actual, near.outputs, strict=True):
        comparison = compare_outputs([got], [want], near)
        for sample, kind in enumerate(kinds):
            cells[name, kind] = sample not in comparison.unexplained
    return cells


def _families(keep: tuple[str, ...] = ()) -> Module:
    """Branches from one (3, 8, 8) input, one per kernel family of the hls and cuda targets (output name = family);
    ``keep``: only these."""
    from sparsecc.compiler.ir.core import Function, Value
    from sparsecc.compiler.ir.ops.sparse import KWTAStage, MaxPoolStage, ReluStage
    from sparsecc.compiler.ir.types import CSC, ELL, TensorType
    from sparsecc.compiler.ir.verifier import verify_module

    rng = np.random.default_rng(11)
    x = Value(TensorType((None, 3, 8, 8)), "x")
    func = Function("main", [x])

    def const(array: np.ndarray, name: str, encoding=None):
        return func.append(ops.Constant.of(np.asarray(array, np.float32), encoding=encoding, name=name)).result

    def add(op):
        return func.append(op).result

    def sparse(rows: int, cols: int, fan_in: int) -> np.ndarray:
        """Fixed fan-in; units 4g .. 4g + 3 have disjoint columns where 4 fan-ins fit (complementary packing)."""
        matrix = np.zeros((rows, cols), np.float32)
        for group in range(0, rows, 4):
            columns = rng.permutation(cols)
            for j, row in enumerate(range(group, min(group + 4, rows))):
                matrix[row, np.take(columns, np.arange(j * fan_in, (j + 1) * fan_in), mode="wrap")] = \
                    rng.standard_normal(fan_in)
        return matrix

    w_dense = rng.standard_normal((8, 3, 3, 3)) * (rng.random((8, 3, 3, 3)) < 0.5)  # zeros in a dense kernel
    w_ell = sparse(8, 27, 6).reshape(8, 3, 3, 3)
    w_csc = sparse(8, 27, 5).reshape(8, 3, 3, 3)
    b = const(rng.standard_normal(8), "b")
    boost = const(rng.uniform(0.5, 1.5, (1, 8, 1, 1)), "boost")
    pad = {"pads": (1, 1, 1, 1)}
    # the sparse-input kernels need a k-WTA bound: keep all but the smallest values (every -inf of a sample ties
    # at the threshold and survives), so that every kind of special value reaches them
    act = add(ops.KWinners.create(x, k=186, over=(1, 2, 3), name="act"))
    out = {
        "conv dense, relu, k-WTA global keep, max-pool": add(ops.SparseConv2D.create(
            x, const(w_dense, "w_dense"), bias=b, boost=boost, name="conv_dense", kernel="dense", **pad,
            epilogue=(ReluStage(), KWTAStage(150, (1, 2, 3)), MaxPoolStage((2, 2), (2, 2))))),
        "conv ell, k-WTA local break": add(ops.SparseConv2D.create(
            x, const(w_ell, "w_ell", ELL(6, 6 / 27)), bias=b, boost=boost, name="conv_ell", kernel="weight_sparse",
            **pad, epilogue=(KWTAStage(3, (1,), "break"),))),
        "conv ell, max-pool, k-WTA global break": add(ops.SparseConv2D.create(
            x, const(w_ell, "w_ell2", ELL(6, 6 / 27)), bias=b, name="conv_ell_pool", kernel="weight_sparse",
            epilogue=(MaxPoolStage((2, 2), (2, 2)), KWTAStage(20, (1, 2, 3), "break")))),
        "conv sparse-sparse": add(ops.SparseConv2D.create(
            act, const(w_csc, "w_csc", CSC(5 / 27)), bias=b, name="conv_csc", kernel="sparse_sparse", **pad)),
        "conv act-sparse": add(ops.SparseConv2D.create(
            act, const(w_dense, "w_act"), bias=b, name="conv_act", kernel="act_sparse", **pad)),
        "k-WTA global keep": add(ops.KWinners.create(x, k=40, over=(1, 2, 3), name="kwta_global")),
        "k-WTA local break": add(ops.KWinners.create(x, k=1, over=(1,), ties="break", name="kwta_local")),
        "max-pool": add(ops.MaxPool2D.create(x, kernel=(2, 2), strides=(2, 2), name="maxpool")),
        "relu": add(ops.Relu.create(x, name="relu")),
    }
    flat = add(ops.Reshape.create(x, shape=(-1, 192), name="flat"))
    flat_act = add(ops.Reshape.create(act, shape=(-1, 192), name="flat_act"))
    lb = const(rng.standard_normal(12), "lb")
    out |= {
        "linear ell, k-WTA keep": add(ops.SparseLinear.create(
            flat, const(sparse(12, 192, 20), "l_ell", ELL(20, 20 / 192)), bias=lb, name="linear_ell",
            kernel="weight_sparse", epilogue=(KWTAStage(4, (1,)),))),
        "linear sparse-sparse": add(ops.SparseLinear.create(
            flat_act, const(sparse(12, 192, 16), "l_csc", CSC(16 / 192)), bias=lb, name="linear_csc",
            kernel="sparse_sparse")),
        "linear act-sparse": add(ops.SparseLinear.create(
            flat_act, const(sparse(12, 192, 100), "l_act"), bias=lb, name="linear_act", kernel="act_sparse")),
        "linear dense, relu": add(ops.SparseLinear.create(
            flat, const(sparse(12, 192, 100), "l_dense"), bias=lb, name="linear_dense", kernel="dense",
            epilogue=(ReluStage(),))),
    }
    if keep:  # only these families (the other layers are dead code, removed by canonicalize)
        out = {name: value for name, value in out.items() if name in keep}
    func.set_outputs(list(out.values()), list(out))
    module = Module("ieee_families", func)
    if keep:
        for p in parse_pipeline("canonicalize"):
            p.apply(module)
    verify_module(module)
    return module


#: a NaN with its sign bit set (what x86 forms for 0 * inf or inf - inf)
NEGATIVE_NAN = np.array([0xFFC00000], np.uint32).view(np.float32)[0]


def _special_feeds(module: Module) -> tuple[dict[str, np.ndarray], list[str]]:
    """Two seeds of special-value samples in one batch, each followed by a copy of its NaN sample whose NaN
    have the sign bit set (14 samples, each kind twice)."""
    feeds, kinds = [], []
    for seed in (1, 2):
        batch, names = special_value_inputs(module, seed, per_sample=3)
        x = batch["x"]
        negative = np.where(np.isnan(x[2]), NEGATIVE_NAN, x[2])[None]
        feeds.append(np.concatenate([x, negative]))
        kinds += [*names, "-NaN"]
    return {"x": np.concatenate(feeds)}, kinds


#: what the HLS calls of each family must be (default packing / complementary packing)
HLS_CALLS = {
    "none": ["kwta", "conv2d_dense", "conv2d_ell", "conv2d_ell", "conv2d_sparse_sparse", "conv2d_act_sparse",
             "kwta", "kwta", "maxpool2d", "relu", "linear_ell", "linear_sparse_sparse", "linear_act_sparse",
             "linear_dense"],
    "complementary": ["kwta", "conv2d_dense", "conv2d_complementary", "conv2d_complementary",
                      "conv2d_complementary_sparse", "conv2d_act_sparse", "kwta", "kwta", "maxpool2d", "relu",
                      "linear_complementary", "linear_complementary_sparse", "linear_act_sparse", "linear_dense"],
}


@pytest.mark.parametrize(("packing", "lanes"), [("none", 4), ("complementary", 1)])
def test_every_hls_float_kernel_family_gives_the_interpreters_special_values(packing: str, lanes: int,
                                                                            tmp_path: Path) -> None:
    """C-simulation (g++, ap_types) of one float design holding every HLS kernel family, on inf, -inf, NaN, -0.0
    and denormals at random positions: every (family, kind) cell equals the interpreter. Four lanes: banked
    CSC, input replicas and multi-lane k-WTA."""
    import re

    from sparsecc.targets import hls

    module = _families()
    model = hls.compile(module, pipeline="", batch=None, csim_cache=tmp_path, packing=packing, lanes=lanes)
    body = model.source("firmware/ieee_families.cpp").split("void ieee_families(", 1)[1]
    calls = re.findall(r"^\s*sparsecc::(\w+)\s*(?:<[^;]*?>)?\(", body, flags=re.MULTILINE)
    assert [c for c in calls if c not in ("stream_to_array", "array_to_stream", "copy")] == HLS_CALLS[packing]
    assert ("static constexpr unsigned lanes = 4;" in model.source("firmware/parameters.h")) == (lanes == 4)
    feeds, kinds = _special_feeds(module)
    with np.errstate(invalid="ignore", over="ignore"):
        actual = model.run(None, feeds)
    names = list(module.func.output_names)
    cells = _cells(module, names, actual, feeds, kinds)
    assert not [cell for cell, ok in cells.items() if not ok], [cell for cell, ok in cells.items() if not ok]


def test_hls_fast_math_drops_the_ieee_stage_is_recorded_and_differs(tmp_path: Path) -> None:
    """fast_math: ``ieee = false`` in every layer config, recorded in the manifest; the weight-skipping
    families then miss 0 * inf (finite where the interpreter gives NaN), so the IEEE stage is what the
    matrix above tests."""
    from sparsecc.targets import hls

    module = _families()
    model = hls.compile(module, pipeline="", batch=None, csim_cache=tmp_path, fast_math=True)
    assert model.manifest.target_options["fast_math"] is True
    config = model.source("firmware/parameters.h")
    assert config.count("static constexpr bool ieee = false;") == 13  # 9 conv/linear, 3 k-WTA, 1 max-pool
    feeds, kinds = _special_feeds(module)
    with np.errstate(invalid="ignore", over="ignore"):
        actual = model.run(None, feeds)
    cells = _cells(module, list(module.func.output_names), actual, feeds, kinds)
    wrong = {family for (family, _), ok in cells.items() if not ok}
    assert {"conv ell, k-WTA local break", "conv sparse-sparse", "linear sparse-sparse"} <= wrong, wrong
    assert "relu" not in wrong and "linear dense, relu" not in wrong  # exact by construction


def test_hls_fast_math_is_refused_for_ap_fixed() -> None:
    from sparsecc.targets.hls.options import HLSOptions

    with pytest.raises(CompileError, match="fast_math applies to float designs only"):
        HLSOptions.from_options({"precision": "ap_fixed<16,6>", "fast_math": True})
    with pytest.raises(CompileError, match="fast_math must be True or False"):
        HLSOptions.from_options({"fast_math": "yes"})


def _cuda_on_cpu(module: Module, fast_math: bool) -> tuple[list[np.ndarray], list[str], dict[str, np.ndarray],
                                                            list[str]]:
    """The cuda target's whole lowering (guards, GPU kernels as serial CPU loops, generic exact paths) built for
    this CPU and run on the special-value feeds: (outputs, kernel and function names, feeds, kinds)."""
    import tvm
    from tvm import relax

    from sparsecc.targets.cuda import kernels as K
    from sparsecc.targets.cuda.lowering import CUDALowering
    from sparsecc.targets.llvm.cpu import resolve_cpu
    from sparsecc.targets.relax_lowering import relax_pipeline

    lowering = CUDALowering(module, fast_math=fast_math, flavour=K.CPU)
    irmod = lowering.build()
    target = resolve_cpu().tvm_target()
    vm = relax.VirtualMachine(relax.build(irmod, target=target, relax_pipeline=relax_pipeline(target)), tvm.cpu())
    feeds, kinds = _special_feeds(module)
    with np.errstate(invalid="ignore", over="ignore"):
        outputs = [y.numpy() for y in vm["main"](tvm.runtime.tensor(feeds["x"]))]
    return outputs, lowering.kernel_names + [gv.name_hint for gv in irmod.functions], feeds, kinds


#: the sparsecc GPU kernel families the family module must exercise
CUDA_FAMILIES = ("conv2d_weight_sparse", "conv2d_sparse_sparse", "conv2d_act_sparse", "linear_weight_sparse",
                 "linear_sparse_sparse", "linear_act_sparse", "kwta_global", "kwta_local")


def test_every_cuda_kernel_family_gives_the_interpreters_special_values() -> None:
    """The cuda lowering with its IEEE guards, the GPU kernels emulated on the CPU: every (family, kind) cell
    equals the interpreter; with fast_math (no guards) the weight-skipping and k-WTA families do not."""
    module = _families()
    outputs, kernels, feeds, kinds = _cuda_on_cpu(module, fast_math=False)
    assert all(any(name.startswith(family) for name in kernels) for family in CUDA_FAMILIES), kernels
    assert sum(name.endswith("_guarded") for name in kernels) == 11  # each layer that calls a sparsecc kernel
    cells = _cells(module, list(module.func.output_names), outputs, feeds, kinds)
    assert not [cell for cell, ok in cells.items() if not ok], [cell for cell, ok in cells.items() if not ok]

    # without the guards (fast_math), on the families that show it (a smaller build)
    shown = ("conv ell, k-WTA local break", "conv sparse-sparse", "linear sparse-sparse", "k-WTA global keep")
    small = _families(shown)
    fast, kernels, feeds, kinds = _cuda_on_cpu(small, fast_math=True)
    assert not any(name.endswith("_guarded") for name in kernels)
    cells = _cells(small, list(small.func.output_names), fast, feeds, kinds)
    wrong = {family for (family, _), ok in cells.items() if not ok}
    assert wrong == set(shown), wrong  # skipped 0 * inf; the k-WTA kernel ranks a negative NaN low


def test_cli_fast_math_is_one_flag_for_every_target_and_recorded(tmp_path: Path) -> None:
    from sparsecc.driver.cli import main as cli_main
    from sparsecc.runtime import read_manifest

    w = np.where(np.arange(24).reshape(4, 6) % 3 == 0, 1.5, 0.0).astype(np.float32)
    model = make_model([oh.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [_vi("x", ["n", 6])],
                       [_vi("y", ["n", 4])], [numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert cli_main(["compile", str(path), "--target", "hls", "--fast-math", "--csim-cache", str(tmp_path / "csim"),
                     "-o", str(tmp_path / "hls"), "-q"]) == 0
    assert read_manifest(tmp_path / "hls").target_options["fast_math"] is True
    assert cli_main(["compile", str(path), "--target", "llvm", "-o", str(tmp_path / "llvm"), "-q"]) == 0
    assert read_manifest(tmp_path / "llvm").target_options["fast_math"] is False
