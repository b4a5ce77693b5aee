"""Fuzzing: mutated ONNX models, ``.sir`` texts and artifact manifests give a result or a SparseccError,
never another exception, and compiled modules never die of a signal.

Everything that compiles, loads or runs compiled code does so in a child process (:class:`Worker`), so a
crash is reported as a finding (the case and the signal) instead of taking pytest down.

The CI run is bounded (518 cases, derandomised, about 40 s: 8 of them mutated models compiled for llvm and run
in the child); set ``SPARSECC_FUZZ_EXAMPLES=N`` (``make fuzz``) for N cases per target with fresh random seeds,
plus N/50 compiled-and-run models (seconds per case). Hypothesis keeps
no example database (nothing is written outside the tests' temporary directories)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hostile import (
    dense_artifact,  # noqa: F401  (a fixture)
    dense_model,
    dropout_model,
    relu_model,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from support import make_model

import sparsecc
from sparsecc.compiler.errors import ArtifactError, SparseccError
from sparsecc.compiler.ir import parse_module, print_module
from sparsecc.runtime.artifact import read_manifest

ON_DEMAND = int(os.environ.get("SPARSECC_FUZZ_EXAMPLES", "0"))


def fuzz_settings(ci_examples: int, per_on_demand: float = 1.0) -> settings:
    on_demand = max(1, int(ON_DEMAND * per_on_demand)) if ON_DEMAND else 0
    return settings(max_examples=on_demand or ci_examples, deadline=None, database=None, derandomize=not ON_DEMAND,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# -- seeds: small zoo-like models ----------------------------------------------------------------------------
def kwta_model() -> onnx.ModelProto:
    """Linear -> boosted k-WTA in the exporter's TopK form (k=3 of 12) -> Linear -> LogSoftmax."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 12)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.exp(-rng.random(12)).astype(np.float32), "boost"),
             numpy_helper.from_array(np.array([3], np.int64), "k"),
             numpy_helper.from_array(np.array([2], np.int64), "start"),
             numpy_helper.from_array(np.array([3], np.int64), "end"),
             numpy_helper.from_array(np.array([1], np.int64), "axis"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(rng.standard_normal((12, 5)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Mul", ["h", "boost"], ["boosted"], name="boost"),
             helper.make_node("TopK", ["boosted", "k"], ["top", "idx"], axis=1, name="topk"),
             helper.make_node("Slice", ["top", "start", "end", "axis"], ["thr"], name="kth"),
             helper.make_node("Less", ["boosted", "thr"], ["mask"], name="less"),
             helper.make_node("Where", ["mask", "zero", "h"], ["a"], name="where"),
             helper.make_node("MatMul", ["a", "w2"], ["logits"], name="fc2"),
             helper.make_node("LogSoftmax", ["logits"], ["out"], axis=1, name="logsoftmax")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                      [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 5])], inits)


SEEDS = [kwta_model(), dense_model(), relu_model(6), dropout_model(training=False)]
OPS = ["Relu", "MatMul", "Add", "Mul", "TopK", "Slice", "Where", "Less", "Reshape", "Gemm", "Softmax", "Conv",
       "Dropout", "Identity", "Exp", "Sqrt", "Foo", ""]
ELEM_TYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL,
              TensorProto.STRING, TensorProto.UINT16, 0, 99]


@st.composite
def mutated_onnx(draw: st.DrawFn) -> bytes:
    """A seed model with 1-3 structural mutations, then possibly byte-level damage."""
    model = onnx.ModelProto()
    model.CopyFrom(draw(st.sampled_from(SEEDS)))
    graph = model.graph
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["attr", "op", "input", "drop", "dim", "init", "opset", "elem", "output"]))
        if kind == "attr" and any(n.attribute for n in graph.node):
            attribute = draw(st.sampled_from([a for n in graph.node for a in n.attribute]))
            attribute.i = draw(st.integers(-5, 2**40))
            if attribute.ints:
                attribute.ints[draw(st.integers(0, len(attribute.ints) - 1))] = draw(st.integers(-5, 40))
        elif kind == "op" and graph.node:
            draw(st.sampled_from(list(graph.node))).op_type = draw(st.sampled_from(OPS))
        elif kind == "input" and any(n.input for n in graph.node):
            node = draw(st.sampled_from([n for n in graph.node if n.input]))
            names = [v for n in graph.node for v in n.output] + [t.name for t in graph.initializer] + ["x", "", "?"]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif kind == "drop" and graph.node:
            del graph.node[draw(st.integers(0, len(graph.node) - 1))]
        elif kind == "dim":
            dims = graph.input[0].type.tensor_type.shape.dim
            dim = dims[draw(st.integers(0, len(dims) - 1))]
            if draw(st.booleans()):
                dim.dim_value = draw(st.integers(-2, 70000))
            else:
                dim.dim_param = draw(st.sampled_from(["N", "M", "", "batch"]))
        elif kind == "init" and graph.initializer:
            tensor = draw(st.sampled_from(list(graph.initializer)))
            if draw(st.booleans()) and tensor.dims:
                tensor.dims[draw(st.integers(0, len(tensor.dims) - 1))] = draw(st.integers(0, 20))
            else:
                try:
                    data = numpy_helper.to_array(tensor).copy()
                except ValueError:  # its dims were already changed by an earlier mutation
                    continue
                if data.size and data.dtype.kind == "f":
                    data.reshape(-1)[draw(st.integers(0, data.size - 1))] = draw(
                        st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, 3e38]))
                elif data.size:
                    data.reshape(-1)[draw(st.integers(0, data.size - 1))] = draw(st.integers(-3, 100))
                tensor.CopyFrom(numpy_helper.from_array(data, tensor.name))
        elif kind == "opset":
            model.opset_import[0].version = draw(st.integers(1, 30))
        elif kind == "elem":
            value = draw(st.sampled_from(list(graph.input) + list(graph.output)))
            value.type.tensor_type.elem_type = draw(st.sampled_from(ELEM_TYPES))
        elif kind == "output" and graph.output:
            graph.output[0].name = draw(st.sampled_from([v for n in graph.node for v in n.output] + ["x", "nope"]))
    data = bytearray(model.SerializeToString())
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


def random_feeds(module: Any, batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for arg in module.func.args:
        shape = tuple(batch if d is None else d for d in arg.type.shape)
        feeds[arg.name] = (rng.standard_normal(shape) * 3).astype(arg.type.numpy_dtype)
    return feeds


@fuzz_settings(150)
@given(mutated_onnx())
def test_mutated_onnx_imports_interprets_and_optimises_or_raises_sparsecc_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="sparsecc-fuzz-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        try:
            module = sparsecc.import_onnx(path)
        except SparseccError:
            return
    if any(a.type.numpy_dtype.kind not in "fiub" for a in module.func.args):
        return
    with contextlib.suppress(SparseccError):
        sparsecc.interpret(module, random_feeds(module))
    with contextlib.suppress(SparseccError):
        sparsecc.optimize(module)


# -- .sir text -------------------------------------------------------------------------------------------------
SIR_SEEDS = [print_module(sparsecc.optimize(m)[0], elide_blobs=False) for m in SEEDS[:2]] + [
    print_module(sparsecc.import_onnx(m), elide_blobs=False) for m in SEEDS]
TOKENS = ["%x", "%0", "(", ")", "{", "}", "<", ">", "[", "]", "?", "x", "f32", "f64", "i64", "tensor", ",", "=",
          ":", "-1", "0", "99999999999999999999", "1e999", "nan", "-inf", '"', "\\", "0x", "0xzz", "#kwta<k=0>",
          "#sparse<density=2.0>", "blob<\"w\">", "dense<[", "nn.linear", "sparse.kwta", "return", "func", "//",
          "\n", "\u00e9", "\x00", "module @m {", "k=-3", "over=[9]", "->", "@", "const"]


@st.composite
def mutated_sir(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SIR_SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@fuzz_settings(300)
@given(mutated_sir())
def test_mutated_ir_text_parses_and_round_trips_or_raises_sparsecc_error(text: str) -> None:
    try:
        module = parse_module(text)
    except SparseccError:
        return
    printed = print_module(module, elide_blobs=False)
    assert print_module(parse_module(printed), elide_blobs=False) == printed


# -- artifacts, loaded and run in a child process ---------------------------------------------------------------
WORKER = textwrap.dedent("""
    import json, sys, traceback
    import numpy as np
    import sparsecc
    from sparsecc.compiler.errors import SparseccError
    from sparsecc.compiler.ir.types import DTYPES
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request.get("compile"):
                model = sparsecc.compile(request["path"], target="llvm")
            else:
                model = sparsecc.load(request["path"])
            batch = model.manifest.batch or 2
            feeds = {t.name: np.ones(tuple(batch if d is None else d for d in t.shape), DTYPES[t.dtype])
                     for t in model.manifest.inputs}
            model.run(None, feeds)
            reply = {"kind": "ok"}
        except SparseccError as error:
            reply = {"kind": "error", "type": type(error).__name__, "message": str(error)}
        except Exception as error:
            reply = {"kind": "uncaught", "type": type(error).__name__, "message": traceback.format_exc()}
        print(json.dumps(reply), flush=True)
""")


class Worker:
    """A child process that loads and runs artifacts; a crash (signal) is reported, and a new one started."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        return subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)

    def load_and_run(self, path: Path, compile_onnx: bool = False) -> dict[str, str]:
        """Load the artifact at ``path`` (or compile the ONNX file at ``path`` for llvm) and run it on ones."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": str(path), "compile": compile_onnx}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=60)
            self.proc = None
            return {"kind": "crash", "message": f"the child died with status {code} (signal {-code})"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)
NAMES = ["model.so", "../model.so", "/etc/hostname", "sub/../model.so", "./model.so", "model.so/", "", ".",
         "manifest.json", "missing.so", "a\\b"]


@st.composite
def mutated_manifest(draw: st.DrawFn, base: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of ``base`` with 1-3 edits somewhere in its tree, and an edit of the library file."""
    data = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = data
        for _ in range(draw(st.integers(0, 3))):
            children = [c for c in (node if isinstance(node, dict) else range(len(node)))
                        if isinstance(node[c], dict | list)]
            if not children:
                break
            node = node[draw(st.sampled_from(children))]
        if not isinstance(node, dict | list) or not node:
            continue
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["replace", "delete", "name", "add"]))
        if action == "delete":
            del node[key]
        elif action == "name":
            node[key] = draw(st.sampled_from(NAMES))
        elif action == "add" and isinstance(node, dict):
            node[draw(st.sampled_from([*NAMES, "extra"]))] = draw(JSON)
        else:
            node[key] = draw(JSON)
    library = draw(st.sampled_from(["keep", "keep", "truncate", "flip", "symlink", "remove"]))
    return data, library


@fuzz_settings(60)
@given(data=st.data())
def test_mutated_manifests_load_or_raise_artifact_errors_and_never_crash(data: st.DataObject, worker: Worker,
                                                                         dense_artifact: Path) -> None:  # noqa: F811
    base = json.loads((dense_artifact / "manifest.json").read_text())
    manifest, library = data.draw(mutated_manifest(base))
    with tempfile.TemporaryDirectory(prefix="sparsecc-fuzz-") as tmp:
        root = Path(tmp) / "art"
        shutil.copytree(dense_artifact, root)
        (root / "manifest.json").write_text(json.dumps(manifest))
        so = root / "model.so"
        if library == "truncate":
            so.write_bytes(so.read_bytes()[:1000])
        elif library == "flip":
            raw = bytearray(so.read_bytes())
            raw[len(raw) // 2] ^= 0x5A
            so.write_bytes(bytes(raw))
        elif library == "symlink":
            shutil.move(so, Path(tmp) / "outside.so")
            so.symlink_to(Path(tmp) / "outside.so")
        elif library == "remove":
            so.unlink()
        with contextlib.suppress(ArtifactError):
            read_manifest(root)
        result = worker.load_and_run(root)
    event(f"child: {result['kind']} {result.get('type', '')}".strip())
    assert result["kind"] in ("ok", "error"), f"{result} for manifest {manifest} and library '{library}'"
    if library != "keep":
        assert result["kind"] == "error", f"a damaged library was accepted: {result}"


@fuzz_settings(8, per_on_demand=0.02)  # compiling takes seconds per case: 8 in CI, 2% of the on-demand count
@given(data=mutated_onnx())
def test_mutated_onnx_compiles_and_runs_in_a_child_or_raises_sparsecc_error(data: bytes, worker: Worker) -> None:
    with tempfile.TemporaryDirectory(prefix="sparsecc-fuzz-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        result = worker.load_and_run(path, compile_onnx=True)
    event(f"child: {result['kind']} {result.get('type', '')}".strip())
    assert result["kind"] in ("ok", "error"), result
