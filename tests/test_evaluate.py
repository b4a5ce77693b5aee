"""sparsecc evaluate: the noise formula, the noise score on a hand-checked case, bad data, trained models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import make_model

from sparsecc.compiler.cli import main
from sparsecc.driver.evaluate import Engine, EvaluationError, add_noise, evaluate, noise

#: Levels at which the hand-checked case below is decided whatever the noise (alpha < 0.5).
HAND_LEVELS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """logits = x @ [[2, 1], [1, 2]] for x (batch, 2): logit0 - logit1 = x0 - x1, so the larger coordinate wins.

    (A dense weight: the llvm target compiles it without the weight-sparse kernels.)"""
    weight = onnx.numpy_helper.from_array(np.array([[2, 1], [1, 2]], np.float32), "w")
    model = make_model([onnx.helper.make_node("MatMul", ["x", "w"], ["logits"], name="matmul")],
                       [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2])],
                       [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 2])],
                       [weight])
    path = tmp_path_factory.mktemp("evaluate") / "identity.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def hand_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three samples: (1, -1) labelled 0 and (-1, 1) labelled 1 are right, (1, -1) labelled 1 is wrong.

    Noisy: x0' - x1' = ±2(1 - a) + a(u0 - u1) with |u0 - u1| <= 2, so the sign of the clean difference is kept
    for every a < 0.5: 2 of 3 correct at each such level, whatever the noise.
    """
    path = tmp_path_factory.mktemp("evaluate") / "hand.npz"
    np.savez(path, x=np.array([[1, -1], [-1, 1], [1, -1]], np.float32), y=np.array([0, 1, 1]))
    return path


def test_noise_formula_by_hand() -> None:
    x = np.array([1.0, -0.5, 0.25, 2.0], np.float32)
    uniform = np.array([-1.0, 1.0, 0.0, 0.5])
    # 0.5*1 - 0.5, -0.25 + 0.5, 0.125 + 0, 1.0 + 0.25
    np.testing.assert_array_equal(add_noise(x, 0.5, uniform), np.array([0.0, 0.25, 0.125, 1.25], np.float32))
    # 0.8*x + 0.2*u
    np.testing.assert_allclose(add_noise(x, 0.2, uniform), [0.6, -0.2, 0.2, 1.7], rtol=1e-6)
    np.testing.assert_array_equal(add_noise(x, 0.0, uniform), x)
    assert add_noise(x, 0.3, uniform).dtype == np.float32


def test_noise_is_uniform_fresh_per_sample_seeded_and_prefix_stable() -> None:
    u = noise((400, 64), 0.25, seed=3)
    assert u.min() >= -1.0 and u.max() < 1.0
    assert abs(u.mean()) < 0.02 and abs(u.var() - 1 / 3) < 0.01  # U(-1, 1): mean 0, variance 1/3
    assert len({row.tobytes() for row in u}) == 400  # fresh noise for every sample
    np.testing.assert_array_equal(u, noise((400, 64), 0.25, seed=3))
    np.testing.assert_array_equal(u[:10], noise((10, 64), 0.25, seed=3))  # a subset sees the same noise
    assert not np.array_equal(u, noise((400, 64), 0.25, seed=4))
    assert not np.array_equal(u, noise((400, 64), 0.3, seed=3))


def test_score_on_a_hand_checked_case(identity_model: Path, hand_data: Path) -> None:
    result = evaluate(identity_model, hand_data, levels=HAND_LEVELS, seed=7, batch=2)
    (engine,) = result.engines
    assert engine.label == "onnxruntime" and engine.correct == [2] * 10 and engine.noise_score == 20
    assert result.accuracy("onnxruntime") == pytest.approx([2 / 3] * 10)
    assert engine.agreement == [1.0] * 10 and result.samples == 3 and result.classes == 2


def test_cli_writes_table_json_and_plot_and_applies_the_transform(identity_model: Path, hand_data: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    transform = tmp_path / "negate.py"
    transform.write_text("def negate(x):\n    return -x\n")
    levels = ",".join(str(a) for a in HAND_LEVELS)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["evaluate", str(identity_model), "--data", str(hand_data), "--noise", levels, "-q",
                 "--transform", f"{transform}:negate", "--json", str(out_json), "--plot", str(out_png)]) == 0
    data = json.loads(out_json.read_text())
    (engine,) = data["engines"]
    # negated inputs flip every prediction: only the wrongly labelled third sample is now right
    assert engine["label"] == "onnxruntime" and engine["correct"] == [1] * 10 and engine["noise_score"] == 10
    assert data["levels"] == HAND_LEVELS and data["samples"] == 3
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "score" in table and "33.33 (100.0)" in table


def test_a_fixed_batch_model_gets_its_last_batch_padded(identity_model: Path, hand_data: Path,
                                                         tmp_path: Path) -> None:
    model = onnx.load(identity_model)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 2  # 3 samples: one full batch, one padded
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, fixed)
    result = evaluate(fixed, hand_data, levels=HAND_LEVELS, batch=64)
    assert result.engine("onnxruntime").correct == [2] * 10


def test_a_transform_must_return_float32_samples(identity_model: Path, hand_data: Path, tmp_path: Path) -> None:
    def widen(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64)

    with pytest.raises(EvaluationError, match="the transform's result must be float32"):
        evaluate(identity_model, hand_data, levels=[0.0], transform=widen)
    with pytest.raises(EvaluationError, match="must return an array of 3 samples"):
        evaluate(identity_model, hand_data, levels=[0.0], transform=lambda x: x[:2])


def test_default_levels_are_the_seeds_eleven(identity_model: Path, hand_data: Path) -> None:
    result = evaluate(identity_model, hand_data)
    assert result.levels == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    assert result.engine("onnxruntime").correct[:10] == [2] * 10


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


X_OK = np.zeros((4, 2), np.float32)
Y_OK = np.array([0, 1, 1, 0])


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": X_OK}, "missing array(s) y"),
    ({"inputs": X_OK, "labels": Y_OK}, "missing array(s) x, y"),
    ({"x": X_OK.astype(np.float64), "y": Y_OK}, "x must be float32, got float64"),
    ({"x": np.zeros((4, 3), np.float32), "y": Y_OK}, "x has samples of shape (3,), the model input 'x' takes 2"),
    ({"x": np.zeros((4, 2, 1), np.float32), "y": Y_OK}, "x has samples of shape (2, 1)"),
    ({"x": X_OK, "y": np.array([0, 1, 2, 0])}, "labels must lie in [0, 2)"),
    ({"x": X_OK, "y": np.array([0, -1, 1, 0])}, "labels must lie in [0, 2)"),
    ({"x": X_OK, "y": Y_OK[:3]}, "y must have shape (4,)"),
    ({"x": X_OK, "y": Y_OK.astype(np.float32)}, "y must hold integer labels"),
])
def test_bad_data_is_one_line_exit_2(identity_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     arrays: dict[str, np.ndarray], message: str) -> None:
    data = _npz(tmp_path / "bad.npz", **arrays)
    out_json = tmp_path / "r.json"
    assert main(["evaluate", str(identity_model), "--data", str(data), "-q", "--json", str(out_json)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparsecc: error:") and message in err[0], err
    assert not out_json.exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--noise", "0,1.5"], "noise levels must lie in [0, 1]"),
    (["--noise", "0,x"], "--noise must be comma-separated numbers"),
    (["--transform", "nowhere.py:f"], "transform file not found"),
    (["--target", "tpu"], "unknown engine 'tpu'"),
    (["--precision", "ap_fixed<16,6>"], "--precision applies to --target hls only"),
    (["--json", "no/such/dir/r.json"], "output directory no/such/dir does not exist"),
])
def test_bad_options_are_one_line_exit_2(identity_model: Path, hand_data: Path, capsys: pytest.CaptureFixture[str],
                                         extra: list[str], message: str) -> None:
    assert main(["evaluate", str(identity_model), "--data", str(hand_data), "-q", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bad_data_file_in_a_fresh_process(identity_model: Path, tmp_path: Path) -> None:
    not_npz = tmp_path / "x.npy"
    np.save(not_npz, X_OK)
    result = subprocess.run([sys.executable, "-m", "sparsecc.compiler.cli", "evaluate", str(identity_model),
                             "--data", str(not_npz)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"sparsecc: error: {not_npz}: expected an .npz with arrays x and "
                                                  "y, got a single array"]


def test_a_trained_zoo_name_that_is_not_built_names_the_make_target(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "digits_sparse_cnn", "--zoo-dir", str(tmp_path), "-q"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "trained model digits_sparse_cnn is not built" in line and "make zoo-trained" in line


def test_runs_of_two_models_merge_into_one_table(identity_model: Path, hand_data: Path, tmp_path: Path) -> None:
    from sparsecc.driver.evaluation_report import from_json, markdown, merge

    twin = tmp_path / "twin.onnx"
    twin.write_bytes(identity_model.read_bytes())
    runs = [from_json(evaluate(m, hand_data, levels=HAND_LEVELS[:2]).to_json()) for m in (identity_model, twin)]
    merged = merge(runs)
    assert [e.label for e in merged.engines] == ["identity: onnxruntime", "twin: onnxruntime"]
    assert markdown(merged).splitlines()[2] == "| 0.00 | 66.7 | 66.7 |"
    other = from_json(evaluate(identity_model, hand_data, levels=HAND_LEVELS[:2], samples=2).to_json())
    with pytest.raises(EvaluationError, match="cannot merge"):
        merge([runs[0], other])


def test_engines_split_precisions_into_hls_engines() -> None:
    from sparsecc.driver.evaluate import engines_from_options

    engines = engines_from_options(["onnxruntime,hls"], ["float", "ap_fixed<16,6>"])
    assert [e.label for e in engines] == ["onnxruntime", "hls float", "hls ap_fixed<16,6>"]
    assert engines_from_options(["llvm"], mcpu="skylake-avx512") == [Engine("llvm", {"mcpu": "skylake-avx512"})]
    with pytest.raises(EvaluationError, match="onnxruntime takes no options"):
        Engine("onnxruntime", {"precision": "float"})


# --- the trained zoo -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_sparse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """digits_sparse_cnn trained briefly (1 epoch, 16 steps of 8 samples) and exported: (onnx, test split, accuracy)."""
    from sparsecc.examples.train_zoo import save, train

    model, result = train("digits_sparse_cnn", epochs=1, seed=0, batch_size=8, max_train_samples=128)
    out = tmp_path_factory.mktemp("trained")
    path = save(model, result, out, seed=0)
    return path, out / "digits_test.npz", result.test_accuracy


def test_training_learns_far_above_chance(trained_sparse: tuple[Path, Path, float]) -> None:
    path, split, accuracy = trained_sparse
    assert accuracy > 0.3  # 10 classes: chance is 0.1
    # the exported model (k-WTA in TopK form, run by onnxruntime) scores what torch scored
    result = evaluate(path, split, levels=[0.0])
    assert result.accuracy("onnxruntime")[0] == pytest.approx(accuracy, abs=2 / result.samples)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["architecture"] == "GSCSparseCNN" and meta["epochs"] == 1


def test_llvm_predicts_like_onnxruntime_on_the_trained_model(trained_sparse: tuple[Path, Path, float]) -> None:
    """Same top-1 as onnxruntime on clean and noisy inputs; a differing sample must sit at a k-WTA near-tie."""
    from sparsecc.compiler.api import load_module
    from sparsecc.compiler.compare import find_near_ties
    from sparsecc.driver.evaluate import load_data

    path, split, _ = trained_sparse
    result = evaluate(path, split, ["llvm"], levels=[0.0, 0.3], samples=48, batch=16)
    ort, llvm = result.engine("onnxruntime"), result.engine("llvm")
    x = load_data(split)[0][:48]
    module = load_module(path)
    for i, alpha in enumerate(result.levels):
        differ = np.flatnonzero(ort.predictions[i] != llvm.predictions[i])
        assert len(differ) <= 2, f"alpha {alpha}: {len(differ)} of 48 predictions differ"
        if len(differ):
            noisy = add_noise(x, alpha, noise(x.shape, alpha, result.seed))[differ]
            near = find_near_ties(module, {"input": noisy})
            assert all(near.by_sample.get(j) for j in range(len(differ))), f"alpha {alpha}: unexplained {differ}"
        assert abs(llvm.correct[i] - ort.correct[i]) <= len(differ)
