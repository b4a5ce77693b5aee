"""Hostile use of the Python API and the checker: one SparseccError, never a raw TypeError or a silent
wrong answer; ``check`` verifies the exported-and-reloaded artifact and writes only in a temporary dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile import (
    dense_artifact,  # noqa: F401  (a fixture)
    dense_model,
    dropout_model,
    save_with_external_data,
    two_batch_model,
)
from onnx import TensorProto, helper
from support import make_model, ort_run

import sparsecc
from sparsecc.compiler.errors import CompileError, FrontendError, IRParseError, PassError, SparseccError
from sparsecc.compiler.ir import parse_module
from sparsecc.driver import api
from sparsecc.driver.check import check_model


@pytest.mark.parametrize("model", [123, None, 4.5, b"model.onnx", ["a.onnx"]])
def test_compile_rejects_what_is_not_a_model(model: object) -> None:
    with pytest.raises(SparseccError, match="model must be a path"):
        sparsecc.compile(model, target="llvm")  # type: ignore[arg-type]


def test_compile_rejects_another_targets_option() -> None:
    with pytest.raises(CompileError, match="unknown option\\(s\\) precision for target 'llvm'"):
        sparsecc.compile(dense_model(), target="llvm", precision="float")
    with pytest.raises(CompileError, match="unknown option\\(s\\) bogus for target 'llvm'"):
        sparsecc.compile(dense_model(), target="llvm", bogus=1)


@pytest.mark.parametrize("elem", [TensorProto.FLOAT16, TensorProto.DOUBLE])
def test_compile_rejects_fp16_and_fp64_models_naming_the_tensor(elem: int) -> None:
    with pytest.raises(CompileError, match="input 'x' is f(16|64): the llvm target supports float32 models only"):
        sparsecc.compile(dense_model(elem=elem), target="llvm")


def test_dropout_in_training_mode_is_refused_and_in_eval_mode_is_identity() -> None:
    with pytest.raises(FrontendError, match="training_mode=1") as info:
        sparsecc.import_onnx(dropout_model(training=True))
    assert info.value.node == "drop"
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    (out,) = sparsecc.interpret(sparsecc.import_onnx(dropout_model(training=False)), {"x": x})
    np.testing.assert_array_equal(out, ort_run(dropout_model(training=False), {"x": x})[0])


def test_external_data_that_is_missing_or_escapes_is_a_frontend_error(tmp_path: Path) -> None:
    good = save_with_external_data(dense_model(), tmp_path / "good")
    sparsecc.import_onnx(good)  # sanity: readable when the data is there
    (tmp_path / "good" / "weights.bin").unlink()
    with pytest.raises(FrontendError, match="bad external data"):
        sparsecc.import_onnx(good)
    for location in ("../good/model.onnx", "/etc/hostname", "a/../../x.bin"):
        path = save_with_external_data(dense_model(), tmp_path / "escape", location=location)
        with pytest.raises(FrontendError, match="bad external data"):
            sparsecc.import_onnx(path)
    with pytest.raises(FrontendError):  # a ModelProto whose data was never loaded
        sparsecc.import_onnx(onnx.load(path, load_external_data=False))


def test_independent_batch_dims_are_refused_and_a_shared_one_is_accepted() -> None:
    with pytest.raises(FrontendError, match="independent dynamic batch dimensions: 'a' \\(N\\), 'b' \\(M\\)"):
        sparsecc.import_onnx(two_batch_model())
    shared = two_batch_model()
    shared.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "N"
    a, b = np.ones((2, 4), np.float32), -np.ones((2, 4), np.float32)
    outs = sparsecc.interpret(sparsecc.import_onnx(shared), {"a": a, "b": b})
    np.testing.assert_array_equal(outs[0], a) and np.testing.assert_array_equal(outs[1], 0 * b)


def test_a_second_specialize_batch_is_not_ignored() -> None:
    with pytest.raises(PassError, match="no dynamic batch to fix \\(its inputs have static batch 2\\)"):
        sparsecc.optimize(dense_model(), "specialize-batch{size=2},specialize-batch{size=3}")
    with pytest.raises(PassError, match="no dynamic batch"):
        sparsecc.optimize(dense_model(), "specialize-batch{size=3}", batch=2)
    module, _ = sparsecc.optimize(dense_model(), "specialize-batch{size=2},specialize-batch{size=2}")
    assert module.func.args[0].type.shape == (2, 8)  # the same size twice is the same module


@pytest.mark.parametrize("text", ["module @m {" * 50_000, "\x00\xff" * 100, "module @m { func @main(" + "[" * 9000,
                                  "module @m {\n  func @main(%x: tensor<?x1xf32>) -> (\"y\": tensor<?x1xf32>) {\n"
                                  "    %c = const dense<" + "[" * 100_000])
def test_hostile_ir_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(IRParseError):
        parse_module(text)


def test_fixed_batch_build_matches_onnxruntime(tmp_path: Path) -> None:
    onnx.save(dense_model(seed=3), tmp_path / "dense.onnx")
    model = sparsecc.compile(tmp_path / "dense.onnx", target="llvm", batch=3)
    reloaded = sparsecc.load(model.export(tmp_path / "fixed"))
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    (expected,) = ort_run(tmp_path / "dense.onnx", {"x": x})
    for compiled in (model, reloaded):
        np.testing.assert_allclose(compiled.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-6)


def sqrt_model() -> onnx.ModelProto:
    """Softmax(Sqrt(x)) of standard-normal inputs: every row with a negative input is all NaN, on every engine."""
    return make_model([helper.make_node("Sqrt", ["x"], ["root"]), helper.make_node("Softmax", ["root"], ["out"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 16])])


def test_check_passes_when_both_sides_are_nan_in_the_same_places(tmp_path: Path) -> None:
    onnx.save(sqrt_model(), tmp_path / "sqrt.onnx")
    report = check_model(tmp_path / "sqrt.onnx", "llvm", batches=(4,))
    assert report.ok, "\n".join(report.lines())
    assert report.batches[0].comparison.max_abs_error < 1e-5  # NaN matched NaN; the rest agrees


def test_check_runs_the_exported_and_reloaded_artifact_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     dense_artifact: Path) -> None:  # noqa: F811
    loaded: list[Path] = []
    real_load = api.load

    def spy(path: Path) -> object:
        loaded.append(Path(path))
        return real_load(path)

    monkeypatch.setattr(api, "load", spy)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    report = check_model(dense_artifact.parent / "dense.onnx", "llvm", batches=(1, 5))
    assert report.ok, "\n".join(report.lines())
    assert len(loaded) == 1 and loaded[0].name == "artifact" and not loaded[0].exists()  # temporary, removed
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("batches", "message"), [((), "non-empty"), ((0,), ">= 1"), ((1 << 40,), "at most"),
                                                 ("1,8", "non-empty list"), ((1.5,), "positive int")])
def test_check_validates_batches_before_any_work(batches: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(SparseccError, match=message):
        check_model(tmp_path / "missing.onnx", "llvm", batches=batches)  # type: ignore[arg-type]


def test_load_and_export_reject_what_is_not_a_path(dense_artifact: Path) -> None:  # noqa: F811
    for bad in (123, None, b"out", ["out"]):
        with pytest.raises(SparseccError, match="must be a str or os.PathLike"):
            sparsecc.load(bad)  # type: ignore[arg-type]
        with pytest.raises(SparseccError, match="must be a str or os.PathLike"):
            sparsecc.load(dense_artifact).export(bad)  # type: ignore[arg-type]
