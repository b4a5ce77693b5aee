"""Hostile use of the command line: every failure is one line on stderr, exit status 2, no traceback, no
"internal error", and nothing written or changed on disk.

The cases run through ``sparsecc.driver.cli.main`` in one child process (stderr captured at the file
descriptor, so a traceback or a native message would be seen); a few also run as separate
``python -m sparsecc.driver.cli`` processes to show that the entry point behaves the same."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from hostile import (
    dense_artifact,  # noqa: F401  (a fixture)
    dense_model,
    dropout_model,
    relu_model,
    save_with_external_data,
    tree,
    two_batch_model,
)
from onnx import TensorProto

DRIVER = textwrap.dedent("""
    import json, os, sys, tempfile, traceback
    from sparsecc.driver.cli import main
    results = []
    for case in json.load(open(sys.argv[1])):
        os.chdir(case["cwd"])
        saved = os.dup(2)
        with tempfile.TemporaryFile() as err:
            os.dup2(err.fileno(), 2)
            try:
                rc = main(case["argv"])
            except SystemExit as exit:
                rc = exit.code if isinstance(exit.code, int) else 2
            except BaseException:
                traceback.print_exc()
                rc = "uncaught"
            sys.stderr.flush()
            os.dup2(saved, 2)
            err.seek(0)
            results.append({"rc": rc, "stderr": err.read().decode(errors="replace")})
        os.close(saved)
    print(json.dumps(results))
""")


class Workspace:
    """A case's files: ``inputs`` (shared, read-only for the CLI) and its own working directory."""

    def __init__(self, root: Path, artifact: Path) -> None:
        self.inputs = root / "inputs"
        self.inputs.mkdir()
        self.artifact = artifact
        onnx.save(dense_model(), self.inputs / "dense.onnx")
        onnx.save(dense_model(elem=TensorProto.FLOAT16), self.inputs / "fp16.onnx")
        onnx.save(dense_model(elem=TensorProto.DOUBLE), self.inputs / "fp64.onnx")
        onnx.save(dropout_model(training=True), self.inputs / "dropout_train.onnx")
        onnx.save(two_batch_model(), self.inputs / "two_batches.onnx")
        onnx.save(relu_model(100_000), self.inputs / "wide.onnx")
        save_with_external_data(dense_model(), self.inputs / "ext_ok")
        (self.inputs / "ext_ok" / "weights.bin").unlink()  # missing external data
        save_with_external_data(dense_model(), self.inputs / "ext_escape", location="../dense.onnx")
        (self.inputs / "random.sir").write_bytes(bytes(range(256)) * 8)
        head = 'module @m {\n  func @main(%x: tensor<?x1xf32>) -> ("y": tensor<?x1xf32>) {\n'
        (self.inputs / "nested.sir").write_text(head + "    %c = const dense<" + "[" * 200_000 + "\n")
        (self.inputs / "text.sir").write_text(head + "    return %x\n  }\n}\n")

    def model(self, name: str) -> str:
        return str(self.inputs / name)


def _user_project(cwd: Path) -> None:
    (cwd / "webapp" / "src").mkdir(parents=True)
    (cwd / "webapp" / "manifest.json").write_text('{"name": "my web app"}')
    (cwd / "webapp" / "src" / "index.js").write_text("console.log('hello')")


def _user_sources(cwd: Path) -> None:
    (cwd / "mine" / "source").mkdir(parents=True)
    (cwd / "mine" / "source" / "module.py").write_text("# my own module")


def _symlinked(cwd: Path) -> None:
    (cwd / "real").mkdir()
    (cwd / "link").symlink_to(cwd / "real")


def _corrupted(ws: Workspace, cwd: Path) -> None:
    shutil.copytree(ws.artifact, cwd / "art")
    data = bytearray((cwd / "art" / "model.so").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cwd / "art" / "model.so").write_bytes(bytes(data))


def _edited(change: Callable[[dict], object]) -> Callable[[Workspace, Path], None]:
    def setup(ws: Workspace, cwd: Path) -> None:
        shutil.copytree(ws.artifact, cwd / "art")
        data = json.loads((cwd / "art" / "manifest.json").read_text())
        change(data)
        (cwd / "art" / "manifest.json").write_text(json.dumps(data))
    return setup


def _mkdir(name: str) -> Callable[[Workspace, Path], None]:
    return lambda ws, cwd: (cwd / name).mkdir()


# name -> (argv built from the workspace, setup of the working directory, expected fragment of the message)
CASES: dict[str, tuple[Callable[[Workspace], list[str]], Callable[[Workspace, Path], None] | None, str]] = {
    "compile -o a user's project with a manifest.json": (
        lambda ws: ["compile", ws.model("dense.onnx"), "-o", "webapp", "-q"], lambda ws, cwd: _user_project(cwd),
        "not an intact sparsecc artifact"),
    "compile -o .": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", ".", "-q"],
                     lambda ws, cwd: (cwd / "notes.txt").write_text("mine"), "not '.' or '..'"),
    "compile -o the parent": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", "..", "-q"], None,
                              "not '.' or '..'"),
    "compile --emit-source into a user's folder": (
        lambda ws: ["compile", ws.model("dense.onnx"), "-o", "mine", "--emit-source", "-q"],
        lambda ws, cwd: _user_sources(cwd), "not a sparsecc artifact"),
    "compile -o a symlink": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", "link", "-q"],
                             lambda ws, cwd: _symlinked(cwd), "symbolic link"),
    "compile -o into a missing directory": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", "no/dir", "-q"],
                                            None, "does not exist"),
    "compile --batch 0": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", "out", "--batch", "0"], None,
                          "--batch must be >= 1"),
    "compile --batch huge": (lambda ws: ["compile", ws.model("dense.onnx"), "-o", "out", "--batch", str(1 << 40)],
                             None, "at most"),
    "compile fp16": (lambda ws: ["compile", ws.model("fp16.onnx"), "-o", "out", "-q"], None, "float32"),
    "compile fp64": (lambda ws: ["compile", ws.model("fp64.onnx"), "-o", "out", "-q"], None, "float32"),
    "compile an hls option for llvm": (
        lambda ws: ["compile", ws.model("dense.onnx"), "-o", "out", "--precision", "float"], None, "hls only"),
    "import -o a directory": (lambda ws: ["import", ws.model("dense.onnx"), "-o", "d"], _mkdir("d"),
                              "is a directory"),
    "opt -o a directory": (lambda ws: ["opt", ws.model("dense.onnx"), "-o", "d"], _mkdir("d"), "is a directory"),
    "run -o a directory": (lambda ws: ["run", str(ws.artifact), "--random", "-o", "d"], _mkdir("d"),
                           "is a directory"),
    "import with missing external data": (lambda ws: ["import", ws.model("ext_ok/model.onnx")], None,
                                          "bad external data"),
    "import with escaping external data": (lambda ws: ["import", ws.model("ext_escape/model.onnx")], None,
                                           "outside the directory"),
    "import Dropout training_mode=1": (lambda ws: ["import", ws.model("dropout_train.onnx")], None,
                                       "training_mode=1"),
    "import independent batch dims": (lambda ws: ["import", ws.model("two_batches.onnx")], None,
                                      "independent dynamic batch"),
    "stats random bytes .sir": (lambda ws: ["stats", ws.model("random.sir")], None, "UTF-8"),
    "stats deeply nested .sir": (lambda ws: ["stats", ws.model("nested.sir")], None, "nested too deeply"),
    "opt a second specialize-batch": (
        lambda ws: ["opt", ws.model("text.sir"), "--batch", "2", "--passes", "specialize-batch{size=3}"], None,
        "no dynamic batch"),
    "check --batches 0": (lambda ws: ["check", ws.model("dense.onnx"), "--batches", "0"], None, ">= 1"),
    "check --batches huge": (lambda ws: ["check", ws.model("dense.onnx"), "--batches", "100000000000"], None,
                             "at most"),
    "check --batches huge in bytes": (lambda ws: ["check", ws.model("wide.onnx"), "--batches", "60000"], None,
                                      "GiB of inputs"),
    "check --batches abc": (lambda ws: ["check", ws.model("dense.onnx"), "--batches", "1,abc"], None,
                            "comma-separated list of ints"),
    "bench --batches 0": (lambda ws: ["bench", "--models", "gsc_dense_small1", "--batches", "0", "--out", "res"],
                          _mkdir("res"), "--batches must be >= 1"),
    "bench --threads 0": (lambda ws: ["bench", "--models", "gsc_dense_small1", "--threads", "0", "--out", "res"],
                          _mkdir("res"), "--threads must be >= 1"),
    "bench --seconds -1": (lambda ws: ["bench", "--models", "gsc_dense_small1", "--seconds", "-1", "--out", "res"],
                           _mkdir("res"), "positive number of seconds"),
    "profile --runs 0": (lambda ws: ["profile", ws.model("dense.onnx"), "--runs", "0"], None, "--runs must be >= 1"),
    "run a corrupted artifact": (lambda ws: ["run", "art", "--random"], _corrupted, "SHA-256"),
    "run an artifact with batch 'abc'": (lambda ws: ["run", "art", "--random"],
                                         _edited(lambda d: d.update(batch="abc")), "batch must be null"),
    "run an artifact with files {}": (lambda ws: ["run", "art", "--random"], _edited(lambda d: d.update(files={})),
                                      "files must map roles"),
    "run an artifact from sparsecc 99": (lambda ws: ["run", "art", "--random"],
                                         _edited(lambda d: d.update(sparsecc_version="99.0")), "newer"),
    "run an artifact with an extra input": (
        lambda ws: ["run", "art", "--random"],
        _edited(lambda d: d["inputs"].append({"name": "y", "shape": [None, 8], "dtype": "f32"})),
        "does the manifest match the library"),
    "run an artifact whose library is outside": (
        lambda ws: ["run", "art", "--random"],
        _edited(lambda d: (d["files"].update(library="../../x.so"), d["contents"].update({"../../x.so": {}}))),
        "not a plain relative name"),
    "run --random --batch huge": (lambda ws: ["run", str(ws.artifact), "--random", "--batch", str(1 << 20)], None,
                                  "at most"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, dense_artifact: Path) -> dict[str, tuple[dict, dict, dict]]:  # noqa: F811
    """Run every case in one child process; per case: its result and the files before and after."""
    root = tmp_path_factory.mktemp("errors")
    ws = Workspace(root, dense_artifact)
    cases, before = [], {}
    for i, (name, (argv, setup, _)) in enumerate(CASES.items()):
        cwd = root / f"case{i}"
        cwd.mkdir()
        if setup is not None:
            setup(ws, cwd)
        cases.append({"cwd": str(cwd), "argv": argv(ws)})
        before[name] = {"cwd": tree(cwd), "inputs": tree(ws.inputs), "artifact": tree(dense_artifact)}
    (root / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run([sys.executable, "-c", DRIVER, str(root / "cases.json")], capture_output=True, text=True,
                         timeout=600, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    after = {}
    for (name, case), result in zip(CASES.items(), results, strict=True):
        del case
        after[name] = result
    return {name: (after[name], before[name], {
        "cwd": tree(Path(c["cwd"])), "inputs": tree(ws.inputs), "artifact": tree(dense_artifact)})
        for name, c in zip(CASES, cases, strict=True)}


@pytest.mark.parametrize("name", list(CASES))
def test_failure_is_one_line_exit_2_and_writes_nothing(outcomes: dict, name: str) -> None:
    result, before, after = outcomes[name]
    lines = result["stderr"].strip().splitlines()
    assert result["rc"] == 2, result
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert lines[0].startswith("sparsecc") and "internal error" not in lines[0], lines[0]
    assert CASES[name][2] in lines[0], lines[0]
    assert after == before  # nothing written, nothing changed, no temporary left behind


def test_the_entry_point_gives_the_same_one_line(tmp_path: Path) -> None:
    onnx.save(dense_model(), tmp_path / "dense.onnx")
    argv = ["compile", str(tmp_path / "dense.onnx"), "-o", "."]
    before = tree(tmp_path)
    result = subprocess.run([sys.executable, "-m", "sparsecc.driver.cli", *argv], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert tree(tmp_path) == before
