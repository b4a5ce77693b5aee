"""Artifacts you can trust: exports never touch what is not a sparsecc artifact, manifests list every file
with size and SHA-256 and are checked at load, nothing in a manifest reaches outside the artifact, a loaded
model owns its library, and concurrent exports serialise."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile import dense_artifact, dense_model  # noqa: F401  (dense_artifact: a fixture)
from support import ort_run

import sparsecc
from sparsecc.compiler.errors import ArtifactError, SparseccError
from sparsecc.compiler.ir.types import DTYPES


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dense_artifact: Path) -> dict[str, Path]:  # noqa: F811
    """Two dense models (different weights and widths) compiled and exported once."""
    root = tmp_path_factory.mktemp("built")
    out = {"a": dense_artifact, "a.onnx": dense_artifact.parent / "dense.onnx"}
    out["b.onnx"] = root / "b.onnx"
    onnx.save(dense_model(seed=1, width=6), out["b.onnx"])
    out["b"] = sparsecc.compile(out["b.onnx"], target="llvm").export(root / "b")
    return out


@pytest.fixture
def artifact(built: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "art"
    shutil.copytree(built["a"], copy)
    return copy


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def edit_manifest(root: Path, change: Callable[[dict], object]) -> None:
    data = json.loads((root / "manifest.json").read_text())
    change(data)
    (root / "manifest.json").write_text(json.dumps(data))


x8 = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)


# -- the manifest ----------------------------------------------------------------------------------------------
def test_manifest_identifies_itself_and_lists_every_file_with_size_and_sha256(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["format"] == "sparsecc-artifact" and manifest["format_version"] == 2
    files = {p.name for p in artifact.iterdir()} - {"manifest.json"}
    assert set(manifest["contents"]) == files == {"model.so"}
    data = (artifact / "model.so").read_bytes()
    assert manifest["contents"]["model.so"] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_reloaded_artifact_matches_onnxruntime(built: dict[str, Path]) -> None:
    (actual,) = sparsecc.load(built["a"]).run(None, {"x": x8})
    (expected,) = ort_run(built["a.onnx"], {"x": x8})
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


# -- exports never destroy what is not an artifact -------------------------------------------------------------
def test_export_refuses_a_user_directory_with_its_own_manifest(built: dict[str, Path], tmp_path: Path) -> None:
    webapp = tmp_path / "webapp"
    (webapp / "src").mkdir(parents=True)
    (webapp / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (webapp / "src" / "index.js").write_text("console.log(1)")
    before = snapshot(webapp)
    with pytest.raises(ArtifactError, match="not an intact sparsecc artifact.*refusing to overwrite"):
        sparsecc.load(built["a"]).export(webapp)
    assert snapshot(webapp) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webapp"]


def test_export_to_the_current_directory_is_refused(built: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    model = sparsecc.load(built["a"])
    for where in (".", tmp_path, tmp_path / "sub" / ".."):
        with pytest.raises(ArtifactError, match="'.' or '..'|current directory"):
            model.export(where)
    assert snapshot(tmp_path) == {"notes.txt": b"mine"}


def test_export_refuses_an_artifact_holding_a_users_file(artifact: Path, built: dict[str, Path]) -> None:
    (artifact / "results.csv").write_text("hours of work")
    before = snapshot(artifact)
    with pytest.raises(ArtifactError, match="not part of its artifact.*results.csv"):
        sparsecc.load(built["b"]).export(artifact)
    assert snapshot(artifact) == before


def test_export_refuses_a_modified_artifact(artifact: Path, built: dict[str, Path]) -> None:
    with (artifact / "model.so").open("ab") as file:
        file.write(b"patched")
    before = snapshot(artifact)
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        sparsecc.load(built["b"]).export(artifact)
    assert snapshot(artifact) == before


def test_export_refuses_a_symlinked_output(built: dict[str, Path], tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ArtifactError, match="symbolic link"):
        sparsecc.load(built["a"]).export(tmp_path / "link")
    assert list(real.iterdir()) == [] and (tmp_path / "link").is_symlink()


def test_export_replaces_an_intact_artifact_and_leaves_no_temporaries(artifact: Path, built: dict[str, Path]) -> None:
    sparsecc.load(built["b"]).export(artifact)
    assert sparsecc.load(artifact).manifest.outputs[0].shape == (None, 6)
    assert [p.name for p in artifact.parent.iterdir()] == ["art"]


def as_format_1(data: dict) -> None:
    """What sparsecc 0.1's first artifacts wrote: format_version 1, files by role, no digests."""
    data["format_version"] = 1
    del data["contents"]


def test_export_replaces_an_artifact_of_an_older_format(artifact: Path, built: dict[str, Path]) -> None:
    edit_manifest(artifact, as_format_1)
    with pytest.raises(ArtifactError, match="format 1.*recompile"):
        sparsecc.load(artifact)
    sparsecc.load(built["b"]).export(artifact)  # recompiling into the same path, as the error says
    assert sparsecc.load(artifact).manifest.outputs[0].shape == (None, 6)
    assert [p.name for p in artifact.parent.iterdir()] == ["art"]


@pytest.mark.parametrize("extra", ["user file", "name outside"])
def test_export_refuses_an_older_artifact_that_holds_more_than_its_files(artifact: Path, built: dict[str, Path],
                                                                        extra: str) -> None:
    if extra == "user file":
        edit_manifest(artifact, as_format_1)
        (artifact / "results.csv").write_text("hours of work")
    else:
        edit_manifest(artifact, lambda d: (as_format_1(d), d["files"].update(library="../model.so")))
    before = snapshot(artifact)
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        sparsecc.load(built["b"]).export(artifact)
    assert snapshot(artifact) == before


def test_export_into_an_empty_directory(built: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    sparsecc.load(built["a"]).export(tmp_path / "empty")
    assert sparsecc.load(tmp_path / "empty").run(None, {"x": x8})[0].shape == (3, 4)


# -- foreign code ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/usr/lib/libfoo.so", "../outside/model.so", "sub/../../model.so", "a\\b.so",
                                  "", ".", 7])
def test_load_rejects_file_names_that_leave_the_artifact(artifact: Path, name: object) -> None:
    def change(data: dict) -> None:
        data["files"]["library"] = name
        data["contents"][name if isinstance(name, str) else "x"] = data["contents"]["model.so"]

    edit_manifest(artifact, change)
    with pytest.raises(ArtifactError, match="not a plain relative name|must be a non-empty file name"):
        sparsecc.load(artifact)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the foreign library")
def test_a_library_outside_the_artifact_is_never_loaded(artifact: Path, tmp_path: Path) -> None:
    marker = tmp_path / "constructor-ran"
    source = tmp_path / "evil.c"
    source.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        __attribute__((constructor)) static void run(void) {{
            FILE *f = fopen("{marker}", "w"); if (f) fclose(f);
        }}"""))
    outside = tmp_path / "outside"
    outside.mkdir()
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(outside / "model.so"), str(source)], check=True)
    data = (outside / "model.so").read_bytes()
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for name in (str(outside / "model.so"), "../outside/model.so"):
        edit_manifest(artifact, lambda d, n=name: (d["files"].update(library=n), d["contents"].update({n: entry})))
        with pytest.raises(ArtifactError):
            sparsecc.load(artifact)
    (artifact / "model.so").unlink()
    (artifact / "model.so").symlink_to(outside / "model.so")
    edit_manifest(artifact, lambda d: (d["files"].update(library="model.so"),
                                       d.update(contents={"model.so": entry})))
    with pytest.raises(ArtifactError, match="symbolic link"):
        sparsecc.load(artifact)
    assert not marker.exists()


def test_truncated_library_is_an_artifact_error(artifact: Path) -> None:
    data = (artifact / "model.so").read_bytes()
    (artifact / "model.so").write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated"):
        sparsecc.load(artifact)


def test_corrupted_library_is_an_artifact_error(artifact: Path) -> None:
    data = bytearray((artifact / "model.so").read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 4096):
        data[i] ^= 0xFF
    (artifact / "model.so").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256"):
        sparsecc.load(artifact)


def test_loaded_model_owns_its_library(artifact: Path, built: dict[str, Path], tmp_path: Path) -> None:
    original = (artifact / "model.so").read_bytes()
    model = sparsecc.load(artifact)
    (before,) = model.run(None, {"x": x8})
    sparsecc.load(built["b"]).export(artifact)  # the source directory is recompiled meanwhile
    copy = model.export(tmp_path / "copy")
    assert (copy / "model.so").read_bytes() == original
    reloaded = sparsecc.load(copy)
    assert reloaded.manifest.outputs == model.manifest.outputs
    np.testing.assert_array_equal(reloaded.run(None, {"x": x8})[0], before)


# -- edited manifests ------------------------------------------------------------------------------------------
EDITS: dict[str, tuple[Callable[[dict], object], str]] = {
    "newer sparsecc": (lambda d: d.update(sparsecc_version="99.0"), "newer than this sparsecc"),
    "bad version": (lambda d: d.update(sparsecc_version=3), "bad sparsecc_version"),
    "older format": (lambda d: d.update(format_version=1), "recompile it"),
    "other format": (lambda d: d.update(format="sparsecc-artifact/9"), "not a sparsecc manifest"),
    "files empty": (lambda d: d.update(files={}), "files must map roles"),
    "contents empty": (lambda d: d.update(contents={}), "contents must list"),
    "contents missing": (lambda d: d.pop("contents"), "lacks contents"),
    "batch text": (lambda d: d.update(batch="abc"), "batch must be null or a positive int"),
    "batch zero": (lambda d: d.update(batch=0), "batch must be null or a positive int"),
    "no inputs": (lambda d: d.update(inputs=[]), "inputs must be a non-empty list"),
    "input garbage": (lambda d: d["inputs"].append("y"), "input must be"),
    "bad shape": (lambda d: d["inputs"][0].update(shape=[None, "8"]), "bad shape"),
    "bad dtype": (lambda d: d["inputs"][0].update(dtype="f128"), "unknown dtype"),
    "repeated input": (lambda d: d["inputs"].append(d["inputs"][0]), "repeat a name"),
    "unknown target": (lambda d: d.update(target="tpu"), "unknown target"),
    "bad digest": (lambda d: d["contents"]["model.so"].update(sha256="00"), "bad sha256"),
    "unlisted role": (lambda d: d["files"].update(extra="extra.bin"), "not listed in the manifest's contents"),
    "not an object": (lambda d: d.clear(), "not a sparsecc manifest"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_manifest_is_an_artifact_error(artifact: Path, edit: str) -> None:
    change, message = EDITS[edit]
    edit_manifest(artifact, change)
    with pytest.raises(ArtifactError, match=message):
        sparsecc.load(artifact)


@pytest.mark.parametrize("edit", ["extra input", "other shape", "other dtype", "extra output"])
def test_manifest_that_disagrees_with_the_library_fails_at_run(artifact: Path, edit: str) -> None:
    spec = {"name": "y", "shape": [None, 8], "dtype": "f32"}
    change = {"extra input": lambda d: d["inputs"].append(spec),
              "other shape": lambda d: d["inputs"][0].update(shape=[None, 9]),
              "other dtype": lambda d: d["inputs"][0].update(dtype="f64"),
              "extra output": lambda d: d["outputs"].append(spec)}[edit]
    edit_manifest(artifact, change)
    model = sparsecc.load(artifact)
    feeds = {t.name: np.zeros((2, *t.shape[1:]), DTYPES[t.dtype]) for t in model.manifest.inputs}
    with pytest.raises(ArtifactError, match="manifest"):
        model.run(None, feeds)


def test_unknown_extra_keys_are_kept(artifact: Path, tmp_path: Path) -> None:
    edit_manifest(artifact, lambda d: d.update(host={"mtriple": "x86_64-linux-gnu", "features": ["+avx2"]}))
    copy = sparsecc.load(artifact).export(tmp_path / "copy")
    assert json.loads((copy / "manifest.json").read_text())["host"]["features"] == ["+avx2"]


# -- concurrent exports ----------------------------------------------------------------------------------------
def test_concurrent_exports_to_one_path_serialise(built: dict[str, Path], tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from sparsecc.runtime.artifact import MANIFEST, Manifest, write_artifact
        source = Path(sys.argv[1])
        manifest = Manifest.from_json(json.loads((source / MANIFEST).read_text()))
        library = (source / "model.so").read_bytes()
        for _ in range(40):
            write_artifact(sys.argv[2], manifest, lambda root: (root / "model.so").write_bytes(library))
        print("done")
    """)
    dest = tmp_path / "shared"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(built[name]), str(dest)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b", "a")]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and out.strip() == "done", err[-2000:]
    assert sparsecc.load(dest).manifest.model in ("dense", "b")
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no temporaries left


def test_export_errors_are_sparsecc_errors(built: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    model = sparsecc.load(built["a"])
    for where in (tmp_path / "file", tmp_path / "no" / "dir"):
        with pytest.raises(SparseccError):
            model.export(where)
    assert snapshot(tmp_path) == {"file": b"x"}
