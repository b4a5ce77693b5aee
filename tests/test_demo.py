"""The README's main job (``make demo`` = ``python -m sparsecc.examples.demo``) on a fresh and a reused output
folder: it compiles the zoo GSCSparseCNN, matches onnxruntime, and replaces what an older sparsecc left there but
never a user's folder (one line, exit status 2, nothing touched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hostile import dense_artifact  # noqa: F401  (a fixture)

import sparsecc
from sparsecc.examples.demo import run_demo


def test_demo_replaces_an_older_artifact_and_matches_onnxruntime(tmp_path: Path, dense_artifact: Path,  # noqa: F811
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "gsc_sparse_cnn.llvm"
    shutil.copytree(dense_artifact, old)  # what an earlier sparsecc wrote there: format 1, no digests
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["contents"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert run_demo(["--out", str(tmp_path), "--batches", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "batch 1: ok" in out and "batch 3: ok" in out
    assert sparsecc.load(old).manifest.model == "gsc_sparse_cnn"


def test_demo_refuses_a_users_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "gsc_sparse_cnn.llvm"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert run_demo(["--out", str(tmp_path), "--batches", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("demo: error:") and "refusing to overwrite" in err[0]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "mine"
