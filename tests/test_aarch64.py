"""aarch64: models cross-compiled with ``--mtriple aarch64-linux-gnu`` are checked against onnxruntime on an
aarch64 device reached through TVM RPC — here TVM's RPC server under qemu-aarch64 (``make aarch64-env``).

Emulation is slow (each emulated ``import tvm`` takes ~15 s of CPU), so one server serves the session and the
tests are few. They skip only where the emulated environment is absent; CI sets it up.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsecc.driver.cli import main
from sparsecc.examples.models.layers import KWinners, KWinners2d, SparseWeights, SparseWeights2d
from sparsecc.frontends.torch import export as torch_export
from sparsecc.runtime.aarch64_emulator import Aarch64Emulator, emulator_problem
from sparsecc.runtime.host import host_arch

AARCH64 = ["--target", "llvm", "--mtriple", "aarch64-linux-gnu"]
needs_emulator = pytest.mark.skipif(emulator_problem() is not None or host_arch() == "aarch64",
                                    reason=f"no aarch64 emulator: {emulator_problem()}")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Aarch64Emulator]:
    """One server for the module; it boots in the background (``address`` waits for it)."""
    with Aarch64Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def doubly_sparse_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small doubly sparse net; for aarch64 it compiles to a weight-sparse conv with fused global k-WTA and
    max-pool, an activation-sparse (scatter) linear with fused k-WTA and a dense linear. Duty cycles are
    filled by a few training batches."""
    torch.manual_seed(0)
    model = nn.Sequential(
        SparseWeights2d(nn.Conv2d(2, 16, 3), sparsity=0.5), KWinners2d(16, percent_on=0.05, k_inference_factor=1.0),
        nn.MaxPool2d(2), nn.Flatten(),
        SparseWeights(nn.Linear(400, 64), sparsity=0.8), KWinners(64, percent_on=0.15, k_inference_factor=1.0),
        nn.Linear(64, 5),
    )
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 2, 12, 12))
    path = tmp_path_factory.mktemp("aarch64") / "doubly_sparse.onnx"
    return torch_export(model.eval(), path, input_shape=(2, 12, 12))


@needs_emulator
def test_check_starts_the_emulator_and_matches_onnxruntime(emulator: Aarch64Emulator, doubly_sparse_onnx: Path,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # ``emulator`` (the module's server, not used here) only boots meanwhile, for the next tests
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the emulator keeps its files
    code = main(["check", str(doubly_sparse_onnx), *AARCH64, "--batches", "1,3", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "under qemu-aarch64 over TVM RPC (--mtriple aarch64-linux-gnu --mcpu generic)" in out
    assert "batch 1: ok" in out and "batch 3: ok" in out
    assert not list(tmp_path.iterdir())  # the server stopped and its files are gone


@needs_emulator
def test_check_neoverse_n1_over_rpc_matches_onnxruntime(emulator: Aarch64Emulator, doubly_sparse_onnx: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(doubly_sparse_onnx), *AARCH64, "--mcpu", "neoverse-n1", "--rpc", emulator.address,
                 "--batches", "1,3", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"over TVM RPC at {emulator.address} (--mtriple aarch64-linux-gnu --mcpu neoverse-n1)" in out
    assert "batch 1: ok" in out and "batch 3: ok" in out


@needs_emulator
def test_run_artifact_over_rpc(emulator: Aarch64Emulator, doubly_sparse_onnx: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    artifact = tmp_path / "a64"
    assert main(["compile", str(doubly_sparse_onnx), *AARCH64, "-o", str(artifact), "-q"]) == 0
    assert main(["run", str(artifact), "--random", "--batch", "2", "--rpc", emulator.address]) == 0
    assert "float32[2, 5]" in capsys.readouterr().out


@pytest.mark.skipif(host_arch() == "aarch64", reason="an aarch64 host runs aarch64 code itself")
def test_check_without_emulator_says_how_to_set_it_up(doubly_sparse_onnx: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPARSECC_AARCH64_ROOT", str(tmp_path / "absent"))
    assert main(["check", str(doubly_sparse_onnx), *AARCH64, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make aarch64-env" in err[0], err


@pytest.mark.parametrize(("flags", "message"), [
    (["--rpc", "nohost"], "--rpc must be HOST:PORT"),
    (["--rpc-tracker", "127.0.0.1:9190"], "--rpc-tracker needs --rpc-key"),
    (["--rpc", "127.0.0.1:9", "--rpc-tracker", "127.0.0.1:9190", "--rpc-key", "a"], "not both"),
    (["--rpc", "127.0.0.1:1"], "cannot reach the TVM RPC server at 127.0.0.1:1"),
])
def test_bad_rpc_address_is_one_line_error(doubly_sparse_onnx: Path, flags: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(doubly_sparse_onnx), *AARCH64, *flags, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
