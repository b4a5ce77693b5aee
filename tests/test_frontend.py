"""ONNX frontend: zoo models import exactly, k-WTA becomes one op, bad models give one clear error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from support import ALL_MODELS, batch_input, make_model, ort_run

from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.cost_model import layer_costs
from sparsecc.compiler.errors import (
    FrontendError,
    KWTANotRecognisedWarning,
    SparseccError,
    UnsupportedOpError,
    UnsupportedOpsetError,
)
from sparsecc.compiler.ir import ops, parse_module, print_module
from sparsecc.examples.models import layers, zoo
from sparsecc.frontends.onnx import import_onnx
from sparsecc.frontends.torch import export as torch_export

LEFTOVER_KWTA_PIECES = (ops.TopK, ops.Where, ops.Less, ops.ScatterElements, ops.Slice)


def kwta_modules(model: torch.nn.Module) -> int:
    return sum(isinstance(m, layers.KWinners | layers.KWinners2d) for m in model.modules())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_zoo_model_imports_with_one_kwta_op_per_layer(name: str, zoo_onnx) -> None:
    module = import_onnx(zoo_onnx(name))
    assert module.count(ops.KWinners) == kwta_modules(zoo.build(name))
    assert module.count(LEFTOVER_KWTA_PIECES) == 0


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("batch", [1, 8])
def test_interpreter_matches_onnxruntime_on_zoo_model(name: str, batch: int, zoo_onnx) -> None:
    path = zoo_onnx(name)
    module = import_onnx(path)
    feeds = {"input": batch_input(name, batch, seed=batch)}
    near = find_near_ties(module, feeds)
    result = compare_outputs(near.outputs, ort_run(path, feeds), near)
    assert result.ok, result.summary()
    assert len(result.excused) <= max(1, batch // 4), result.summary()  # near-ties are rare, not the norm


@pytest.mark.parametrize("name", ALL_MODELS)
def test_print_parse_print_is_identical_for_zoo_model(name: str, zoo_onnx) -> None:
    text = print_module(import_onnx(zoo_onnx(name)))
    assert print_module(parse_module(text)) == text


def test_gsc_sparse_cnn_sparsity_is_recorded(zoo_onnx) -> None:
    module = import_onnx(zoo_onnx("gsc_sparse_cnn"))
    weights = [c.weight_density for c in layer_costs(module) if c.weight_density is not None]
    assert [round(w, 2) for w in weights] == [0.48, 0.2, 0.1, 1.0]
    assert [op.attr("k") for op in module.walk(ops.KWinners)] == [4767, 800, 100]
    fan_ins = [op.operand("weight").type.encoding.fan_in for op in module.walk((ops.Conv2D, ops.Linear))
               if op.operand("weight").type.encoding is not None]
    assert fan_ins == [12, 320, 160]


class _KthvalueKWinners(torch.nn.Module):
    """A user's own k-WTA module with nupic.torch's interface, calling kthvalue (not exportable by torch)."""

    def __init__(self, n: int, k: int, break_ties: bool = False) -> None:
        super().__init__()
        self.n, self.k, self.k_inference, self.boost_strength = n, k, k, 1.0
        self.break_ties, self.relu = break_ties, False
        self.register_buffer("duty_cycle", torch.linspace(0.0, 0.3, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boosted = x * torch.exp(-self.boost_strength * self.duty_cycle)
        threshold = boosted.kthvalue(self.n - self.k + 1, dim=1, keepdim=True)[0]
        return x.masked_fill(boosted < threshold, 0)


@pytest.mark.parametrize("break_ties", [False, True])
def test_user_kwta_module_exports_and_imports_as_one_op(tmp_path: Path, break_ties: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), _KthvalueKWinners(16, 4, break_ties), torch.nn.Linear(16, 3))
    path = torch_export(model, tmp_path / "user.onnx", input_shape=(6,))
    module = import_onnx(path)
    (kwta,) = module.walk(ops.KWinners)
    assert (kwta.attr("k"), kwta.attr("over"), kwta.attr("ties")) == (4, (1,), "break" if break_ties else "keep")
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    near = find_near_ties(module, {"input": x})
    assert compare_outputs(near.outputs, [expected], near).ok


class _TopKForm(torch.nn.Module):
    """Global boosted k-WTA after a conv, written in the TopK form, for torch's dynamo exporter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.register_buffer("factor", torch.exp(-torch.linspace(0.0, 0.4, 4)).reshape(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        boosted = (y * self.factor).reshape(y.shape[0], -1)
        threshold = boosted.topk(9, dim=1).values[:, 8:9]
        return y.reshape(y.shape[0], -1).masked_fill(boosted < threshold, 0).reshape(y.shape)


def test_dynamo_exporter_form_is_recognised(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _TopKForm().eval()
    x = torch.randn(2, 1, 8, 8)
    path = tmp_path / "dynamo.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=18, input_names=["input"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    module = import_onnx(path)
    (kwta,) = module.walk(ops.KWinners)
    assert (kwta.attr("k"), kwta.attr("over")) == (9, (1, 2, 3))
    assert module.count(LEFTOVER_KWTA_PIECES) == 0
    feeds = {"input": x.numpy()}
    near = find_near_ties(module, feeds)
    assert compare_outputs(near.outputs, ort_run(path, feeds), near).ok


# -- errors -------------------------------------------------------------------------------------------------
def _relu_model(opset: int = 17, op_type: str = "Relu", domain: str = "") -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], name="the_node", domain=domain)
    model = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], opset=opset)
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


def test_unsupported_op_names_node_op_and_supported_list() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(_relu_model(op_type="Erf"))
    message = str(info.value)
    assert "op Erf" in message and "node 'the_node'" in message
    assert "supported ops:" in message and "Conv" in message and "TopK" in message


def test_custom_domain_op_is_unsupported() -> None:
    with pytest.raises(UnsupportedOpError, match="custom-domain op 'com.acme.Relu'"):
        import_onnx(_relu_model(op_type="Relu", domain="com.acme"))


def test_unknown_opset_is_rejected() -> None:
    with pytest.raises(UnsupportedOpsetError, match="opset 7 is not supported"):
        import_onnx(_relu_model(opset=7))


def test_malformed_model_is_rejected() -> None:
    model = _relu_model()
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(FrontendError, match="invalid ONNX model|shape inference failed"):
        import_onnx(model)


def test_truncated_file_is_rejected(tmp_path: Path, zoo_onnx) -> None:
    data = Path(zoo_onnx("gsc_dense_small1")).read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(FrontendError, match="truncated or corrupt|no ONNX graph|invalid"):
        import_onnx(truncated)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="model file not found"):
        import_onnx(tmp_path / "absent.onnx")


def test_only_a_dynamic_batch_is_supported() -> None:
    model = _relu_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "width"
    with pytest.raises(FrontendError, match=r"dynamic dimensions at axes \[0, 1\]"):
        import_onnx(model)


# -- property: mutated models either import or raise SparseccError --------------------------------------------
def _seed_model() -> onnx.ModelProto:
    """A small model with conv, k-WTA (TopK form), pooling, flatten and gemm, as the exporter writes them."""
    import tempfile

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), _KthvalueKWinners2d(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(12, 2))
    path = Path(tempfile.mkdtemp(prefix="sparsecc-fuzz-")) / "seed.onnx"
    return onnx.load(str(torch_export(model.eval(), path, input_shape=(1, 6, 6))))


class _KthvalueKWinners2d(_KthvalueKWinners):
    """Global k-WTA over a (B, 3, 4, 4) tensor through the nupic-style interface."""

    def __init__(self) -> None:
        super().__init__(48, 14)
        self.local = False  # select over C*H*W (nupic's KWinners2d default)
        self.duty_cycle = torch.linspace(0.0, 0.3, 3).reshape(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        boosted = (x * torch.exp(-self.boost_strength * self.duty_cycle)).reshape(x.shape[0], -1)
        threshold = boosted.kthvalue(self.n - self.k + 1, dim=1, keepdim=True)[0]
        return flat.masked_fill(boosted < threshold, 0).reshape(x.shape)


SEED = _seed_model()
OP_NAMES = ["Relu", "Conv", "Gemm", "TopK", "Slice", "Where", "Less", "Reshape", "MaxPool", "Erf", "Foo", ""]


@st.composite
def mutated_models(draw: st.DrawFn) -> bytes:
    model = onnx.ModelProto()
    model.CopyFrom(SEED)
    graph = model.graph
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["attr", "op", "input", "drop", "dim", "init", "opset", "elem"]))
        if kind == "attr":
            nodes = [n for n in graph.node if n.attribute]
            node = draw(st.sampled_from(nodes))
            attribute = draw(st.sampled_from(list(node.attribute)))
            if attribute.ints:
                attribute.ints[draw(st.integers(0, len(attribute.ints) - 1))] = draw(st.integers(-3, 40))
            else:
                attribute.i = draw(st.integers(-3, 40))
        elif kind == "op":
            draw(st.sampled_from(list(graph.node))).op_type = draw(st.sampled_from(OP_NAMES))
        elif kind == "input":
            node = draw(st.sampled_from([n for n in graph.node if n.input]))
            names = [v for n in graph.node for v in n.output] + [t.name for t in graph.initializer] + ["x", ""]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif kind == "drop":
            del graph.node[draw(st.integers(0, len(graph.node) - 1))]
        elif kind == "dim":
            dim = graph.input[0].type.tensor_type.shape.dim[draw(st.integers(0, 3))]
            dim.dim_value = draw(st.integers(0, 9))
        elif kind == "init":
            index = draw(st.integers(0, len(graph.initializer) - 1))
            array = numpy_helper.to_array(graph.initializer[index])
            shape = draw(st.sampled_from([(1,), (2, 2), array.shape[::-1] or (1,), ()]))
            graph.initializer[index].CopyFrom(numpy_helper.from_array(
                np.resize(array, shape).astype(array.dtype), graph.initializer[index].name))
        elif kind == "opset":
            model.opset_import[0].version = draw(st.sampled_from([1, 9, 11, 13, 18, 21, 30]))
        else:
            graph.input[0].type.tensor_type.elem_type = draw(st.sampled_from([1, 6, 7, 9, 10, 11, 16]))
    data = model.SerializeToString()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=8))
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_models())
def test_frontend_imports_or_raises_sparsecc_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "model.onnx"
    path.write_bytes(data)
    try:
        module = import_onnx(path)
    except SparseccError as exc:
        message = str(exc).strip()
        assert message and "\n" not in message  # one clear line
        return
    assert print_module(parse_module(print_module(module))) == print_module(module)


KWTA_VARIANTS = {
    "1d": (lambda **kw: layers.KWinners(64, 0.1, k_inference_factor=1.5, **kw), (64,), (1,)),
    "global": (lambda **kw: layers.KWinners2d(8, 0.1, k_inference_factor=1.5, **kw), (8, 5, 5), (1, 2, 3)),
    "local": (lambda **kw: layers.KWinners2d(16, 0.25, k_inference_factor=1.0, local=True, **kw), (16, 3, 4), (1,)),
}
KWTA_OPTIONS = {
    "ties_kept": {}, "break_ties": {"break_ties": True}, "relu": {"relu": True},
    "break_ties_relu": {"break_ties": True, "relu": True}, "no_boost": {"boost_strength": 0.0},
}


@pytest.mark.parametrize("option", sorted(KWTA_OPTIONS))
@pytest.mark.parametrize("variant", sorted(KWTA_VARIANTS))
def test_every_kwta_export_form_becomes_one_op(variant: str, option: str, tmp_path: Path) -> None:
    factory, sample, over = KWTA_VARIANTS[variant]
    options = KWTA_OPTIONS[option]
    torch.manual_seed(0)
    layer = factory(**options)
    layer.train()
    for _ in range(3):  # distinct duty cycles, hence distinct boost factors
        layer(torch.randn(16, *sample))
    path = torch_export(layer.eval(), tmp_path / "kwta.onnx", input_shape=sample)
    module = import_onnx(path)
    (kwta,) = module.walk(ops.KWinners)
    assert kwta.attr("over") == over
    assert kwta.attr("k") == layer.k_inference
    assert kwta.attr("ties") == ("break" if options.get("break_ties") else "keep")
    assert (kwta.operand("boost") is None) == (options.get("boost_strength") == 0.0)
    assert module.count(ops.Relu) == (1 if options.get("relu") else 0)
    assert module.count(LEFTOVER_KWTA_PIECES) == 0
    x = np.random.default_rng(1).standard_normal((4, *sample)).astype(np.float32)
    near = find_near_ties(module, {"input": x})
    result = compare_outputs(near.outputs, ort_run(path, {"input": x}), near)
    assert result.ok and not result.mismatched, result.summary()


# -- k-WTA recognition: what is not a k-WTA is named (hand-built graphs; the form matrix is test_kwta_forms) -----
def _kwta_graph(topk_attrs: dict, compare: str = "Less", boost_input: bool = False,
                other: bool = False) -> onnx.ModelProto:
    """``where(compare(b, topk(b, 3).values[:, 2:3]), 0, x)`` over (N, 8), b = x or x * a second input
    ``f``; ``other``: the TopK runs on ``f`` (N, 8) instead of b."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])]
    nodes = []
    boosted = "x"
    if boost_input or other:
        inputs.append(helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 8] if other else [8]))
    if boost_input:
        nodes.append(helper.make_node("Mul", ["x", "f"], ["b"], name="boost"))
        boosted = "b"
    inits = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("k", 3), ("s", 2), ("e", 3), ("a", 1))]
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    nodes += [
        helper.make_node("TopK", ["f" if other else boosted, "k"], ["values", "indices"], name="the_topk", axis=1,
                         **topk_attrs),
        helper.make_node("Slice", ["values", "s", "e", "a"], ["thr"], name="kth"),
        helper.make_node(compare, [boosted, "thr"], ["mask"], name="cmp"),
        helper.make_node("Where", ["mask", "zero", "x"], ["y"], name="select"),
    ]
    return make_model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)


@pytest.mark.parametrize(("topk_attrs", "compare", "boost_input", "other", "reason"), [
    ({}, "Less", False, False, None),
    ({"largest": 0}, "Less", False, False, "TopK(largest=0) selects the smallest values"),
    ({}, "Greater", False, False, "Greater zeroes the winners, not the losers"),
    ({}, "LessOrEqual", False, False, "LessOrEqual zeroes the units tied with the threshold"),
    ({}, "Less", True, False, "the compared values are neither x nor x times a constant boost factor"),
    ({}, "Less", False, True, "the TopK input is neither the compared tensor nor its flattening"),
])
def test_topk_mask_is_recognised_or_named_in_one_warning(topk_attrs: dict, compare: str, boost_input: bool,
                                                         other: bool, reason: str | None) -> None:
    model = _kwta_graph(topk_attrs, compare, boost_input, other)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = import_onnx(model)
    kwta_warnings = [w for w in caught if issubclass(w.category, KWTANotRecognisedWarning)]
    if reason is None:
        assert module.count(ops.KWinners) == 1 and kwta_warnings == []
        return
    assert module.count(ops.KWinners) == 0 and len(kwta_warnings) == 1
    message = str(kwta_warnings[0].message)
    assert message.startswith(f"node 'the_topk' (TopK): k-WTA not recognised: {reason}")
    assert message.endswith("; the layer runs dense")
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)}
    if boost_input or other:
        feeds["f"] = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32) if other else np.linspace(
            0.5, 1.5, 8, dtype=np.float32)
    from sparsecc.compiler.interpreter import interpret

    np.testing.assert_array_equal(interpret(module, feeds)[0], ort_run(model, feeds)[0])  # still runs, dense


def test_topk_without_a_mask_is_not_warned_about() -> None:
    inits = [numpy_helper.from_array(np.array([3], np.int64), "k")]
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1)
    model = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                       [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", 3])], inits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KWTANotRecognisedWarning)
        assert import_onnx(model).count(ops.TopK) == 1


def test_reduce_min_is_imported_only_as_a_topk_threshold() -> None:
    node = helper.make_node("ReduceMin", ["x"], ["y"], name="the_min", axes=[1], keepdims=1)
    model = make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], opset=17)
    with pytest.raises(UnsupportedOpError, match="node 'the_min'.*only over the axis of sorted TopK values"):
        import_onnx(model)
