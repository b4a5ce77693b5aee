"""Small hand-made ONNX models and artifacts for the reliability tests (errors, artifacts, fuzzing)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper
from support import make_model

_NP = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}


def dense_model(seed: int = 0, width: int = 4, elem: int = TensorProto.FLOAT, batch: str = "N") -> onnx.ModelProto:
    """MatMul(x, w) + b -> Relu: a dense layer that compiles in seconds and uses no sparse kernel."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((8, width)).astype(_NP[elem]), "w")
    bias = numpy_helper.from_array(rng.standard_normal(width).astype(_NP[elem]), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul"),
             helper.make_node("Add", ["y", "b"], ["z"], name="add"),
             helper.make_node("Relu", ["z"], ["out"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", elem, [batch, 8])],
                      [helper.make_tensor_value_info("out", elem, [batch, width])], [weight, bias])


def dropout_model(training: bool) -> onnx.ModelProto:
    """Identity-like Dropout whose training_mode input is a constant."""
    ratio = numpy_helper.from_array(np.array(0.5, np.float32), "ratio")
    mode = numpy_helper.from_array(np.array(training), "training_mode")
    nodes = [helper.make_node("Dropout", ["x", "ratio", "training_mode"], ["out"], name="drop")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 8])], [ratio, mode])


def relu_model(width: int) -> onnx.ModelProto:
    """Relu over (N, width)."""
    return make_model([helper.make_node("Relu", ["x"], ["out"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", width])])


def two_batch_model() -> onnx.ModelProto:
    """Two inputs whose batch dimensions are independent symbols (N and M)."""
    nodes = [helper.make_node("Relu", ["a"], ["ra"]), helper.make_node("Relu", ["b"], ["rb"])]
    return make_model(nodes, [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                              helper.make_tensor_value_info("b", TensorProto.FLOAT, ["M", 4])],
                      [helper.make_tensor_value_info("ra", TensorProto.FLOAT, ["N", 4]),
                       helper.make_tensor_value_info("rb", TensorProto.FLOAT, ["M", 4])])


def save_with_external_data(model: onnx.ModelProto, directory: Path, location: str = "weights.bin") -> Path:
    """Save ``model`` with its initializers in an external file; ``location`` may be rewritten afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    external_data_helper.convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                                        location="weights.bin", size_threshold=0)
    path = directory / "model.onnx"
    onnx.save(model, path)
    if location != "weights.bin":
        proto = onnx.load(path, load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(proto, path)
    return path


@pytest.fixture(scope="session")
def dense_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dense model compiled for llvm and exported once per session (copy it before changing it)."""
    import sparsecc

    root = tmp_path_factory.mktemp("dense")
    onnx.save(dense_model(), root / "dense.onnx")
    return sparsecc.compile(root / "dense.onnx", target="llvm").export(root / "artifact")


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symbolic link ('-> target') under ``root``, hidden ones included."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                out[key] = path.read_bytes()
            else:
                out[key + "/"] = ""
    return out
