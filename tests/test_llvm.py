"""The llvm target: every zoo model agrees with onnxruntime; artifacts load, validate inputs, fail clearly."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import ALL_MODELS, batch_input, ort_run

import sparsecc
from sparsecc.compiler.compare import compare_outputs
from sparsecc.compiler.errors import ArtifactError, CompileError, InputError, PassError, SparseccError
from sparsecc.driver.check import check_model


@pytest.mark.parametrize("name", ALL_MODELS)
def test_check_passes_on_every_zoo_model(name: str, zoo_onnx) -> None:
    report = check_model(zoo_onnx(name), "llvm", batches=(1, 8))
    assert report.ok, "\n".join(report.lines())


@pytest.fixture(scope="module")
def gsc_artifact(zoo_onnx, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparsecc.compile(zoo_onnx("gsc_sparse_cnn"), target="llvm").export(tmp_path_factory.mktemp("a") / "gsc")


def test_manifest_describes_the_artifact(gsc_artifact: Path) -> None:
    manifest = json.loads((gsc_artifact / "manifest.json").read_text())
    assert manifest["target"] == "llvm" and manifest["batch"] is None
    assert manifest["inputs"] == [{"name": "input", "shape": [None, 1, 32, 32], "dtype": "f32"}]
    assert manifest["outputs"] == [{"name": "output", "shape": [None, 12], "dtype": "f32"}]
    assert manifest["pipeline"].startswith("canonicalize,fuse-kwta,compress-weights")
    assert manifest["target_options"]["mtriple"] == "x86_64-linux-gnu" and manifest["target_options"]["mcpu"]
    assert manifest["sparsecc_version"] == sparsecc.__version__


def test_loaded_artifact_runs_like_onnxruntime_session(gsc_artifact: Path) -> None:
    model = sparsecc.load(gsc_artifact)
    x = batch_input("gsc_sparse_cnn", 3)
    (by_none,) = model.run(None, {"input": x})
    (by_name,) = model.run(["output"], {"input": x})
    np.testing.assert_array_equal(by_none, by_name)
    assert by_none.shape == (3, 12) and np.allclose(np.exp(by_none).sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("feeds", "message"), [
    ({}, "missing input"),
    ({"input": np.zeros((1, 1, 32, 32), np.float32), "extra": np.zeros(1)}, "unknown input"),
    ({"input": np.zeros((1, 1, 32, 32))}, "dtype float64"),
    ({"input": np.zeros((1, 32, 32), np.float32)}, "has shape [1, 32, 32]"),
    ({"input": [[0.0]]}, "must be a numpy array"),
    ({"input": np.zeros((0, 1, 32, 32), np.float32)}, "empty batch"),
])
def test_run_validates_inputs(gsc_artifact: Path, feeds: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sparsecc.load(gsc_artifact).run(None, feeds)


def test_run_rejects_unknown_output_names(gsc_artifact: Path) -> None:
    with pytest.raises(InputError, match="unknown output"):
        sparsecc.load(gsc_artifact).run(["logits"], {"input": batch_input("gsc_sparse_cnn", 1)})
    with pytest.raises(InputError, match="must be a list of names or None, got the string 'output'"):
        sparsecc.load(gsc_artifact).run("output", {"input": batch_input("gsc_sparse_cnn", 1)})


def test_fixed_batch_is_chosen_at_compile_time(zoo_onnx) -> None:
    model = sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="llvm", batch=2)
    assert model.manifest.inputs[0].shape == (2, 1, 32, 32)
    x = batch_input("gsc_dense_small1", 2)
    comparison = compare_outputs(model.run(None, {"input": x}), ort_run(zoo_onnx("gsc_dense_small1"), {"input": x}))
    assert comparison.ok and comparison.samples == 2, comparison.summary()  # dense: no k-WTA, no excuse
    with pytest.raises(InputError, match="expected \\[2, 1, 32, 32\\]"):
        model.run(None, {"input": batch_input("gsc_dense_small1", 3)})


def test_load_rejects_what_is_not_a_complete_artifact(gsc_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="artifact not found"):
        sparsecc.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        sparsecc.load(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(gsc_artifact, broken)
    (broken / "model.so").unlink()
    with pytest.raises(ArtifactError, match="its library file model.so is missing"):
        sparsecc.load(broken)
    old = tmp_path / "old"
    shutil.copytree(gsc_artifact, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="recompile it"):
        sparsecc.load(old)
    garbage = tmp_path / "garbage"
    shutil.copytree(gsc_artifact, garbage)
    (garbage / "model.so").write_bytes(b"not a library")
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        sparsecc.load(garbage)
    manifest = json.loads((garbage / "manifest.json").read_text())
    manifest["contents"]["model.so"] = {"size": 13, "sha256": hashlib.sha256(b"not a library").hexdigest()}
    (garbage / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="cannot load"):  # digests match: the library itself is refused
        sparsecc.load(garbage)


def test_compile_rejects_bad_requests(zoo_onnx, tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="unknown target 'tpu'"):
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="tpu")
    with pytest.raises(PassError, match="unknown pass"):
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), passes="canonicalize,warp-speed")
    with pytest.raises(SparseccError, match="passes must be a pipeline string"):
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), passes=["canonicalize"])
    with pytest.raises(SparseccError, match="batch must be an int or None, got str '4'"):
        sparsecc.compile(zoo_onnx("gsc_dense_small1"), batch="4")
    model = sparsecc.compile(zoo_onnx("gsc_dense_small1"))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        model.export(occupied)
    assert (occupied / "notes.txt").read_text() == "mine"
    with pytest.raises(ArtifactError, match="does not exist"):
        model.export(tmp_path / "no" / "such" / "dir")


def test_export_replaces_an_earlier_artifact(zoo_onnx, tmp_path: Path) -> None:
    first = sparsecc.compile(zoo_onnx("gsc_dense_small1")).export(tmp_path / "a")
    second = sparsecc.compile(zoo_onnx("gsc_dense_small2")).export(tmp_path / "a")
    assert first == second and sparsecc.load(second).manifest.model == "gsc_dense_small2"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary directories left behind


def test_emit_source_writes_tvmscript_and_llvm_ir_into_the_artifact(zoo_onnx, tmp_path: Path) -> None:
    out = tmp_path / "art"
    model = sparsecc.compile(zoo_onnx("gsc_dense_small1"), target="llvm", emit_source=out)
    model.export(out)
    module_py = (out / "source" / "module.py").read_text()
    assert "def main(" in module_py and "R.dataflow" in module_py
    assert "define " in (out / "source" / "model.ll").read_text()
    assert sparsecc.load(out).manifest.target == "llvm"  # the sources do not disturb the artifact
