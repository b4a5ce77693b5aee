"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsecc.examples.models import zoo

ALL_MODELS = sorted(zoo.ZOO)
SPARSE_MODELS = sorted(n for n, e in zoo.ZOO.items() if e.sparse)
GSC_MODELS = sorted(n for n in zoo.ZOO if n.startswith("gsc_"))


def filecheck(text: str, checks: str) -> None:
    """Match ``text`` against the ``CHECK:``/``CHECK-NEXT:``/``CHECK-NOT:`` lines of ``checks`` with FileCheck
    (the ``filecheck`` package, run as a program), each check matching a whole line; fail with its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".check", delete=False) as f:
        f.write(checks)
    try:
        proc = subprocess.run([sys.executable, "-m", "filecheck", "--match-full-lines", f.name], input=text,
                              capture_output=True, text=True, timeout=60)
    finally:
        Path(f.name).unlink()
    if proc.returncode != 0:
        pytest.fail(f"FileCheck failed:\n{proc.stdout}{proc.stderr}", pytrace=False)


def batch_input(name: str, batch: int, seed: int = 0) -> np.ndarray:
    shape = (batch, *zoo.ZOO[name].input_shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ort_run(path: Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    data = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
               initializers: list[onnx.TensorProto] | None = None, opset: int = 17) -> onnx.ModelProto:
    """A hand-built ONNX model that onnxruntime 1.31 accepts (IR version 8)."""
    graph = onnx.helper.make_graph(nodes, "test", inputs, outputs, initializer=initializers or [])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model
