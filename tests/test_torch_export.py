"""sparsecc.frontends.torch.export: k-WTA modules (ours, nupic-style, or a user's own) export as TopK subgraphs
that onnxruntime runs with the same winners as torch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sparsecc.compiler.errors import FrontendError, SparseccError
from sparsecc.examples.models import KWinners, KWinners2d
from sparsecc.frontends.torch import export, exportable_kwta, find_kwta_modules

VARIANTS = {
    # name: (factory, sample shape)
    "dim1": (lambda **kw: KWinners(64, 0.1, k_inference_factor=1.5, **kw), (64,)),
    "global": (lambda **kw: KWinners2d(8, 0.1, k_inference_factor=1.5, **kw), (8, 5, 5)),
    "local": (lambda **kw: KWinners2d(16, 0.25, k_inference_factor=1.0, local=True, **kw), (16, 3, 4)),
}
OPTIONS = {
    "ties_kept": {},
    "break_ties": {"break_ties": True},
    "relu": {"relu": True},
    "break_ties_relu": {"break_ties": True, "relu": True},
    "no_boost": {"boost_strength": 0.0},
}


def trained(module: nn.Module, sample_shape: tuple[int, ...]) -> nn.Module:
    """Run a few random batches in training mode so the duty cycles (hence boost factors) differ per unit."""
    generator = torch.Generator().manual_seed(0)
    module.train()
    for _ in range(3):
        module(torch.randn(16, *sample_shape, generator=generator))
    return module.eval()


def separated_input(batch: int, sample_shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Distinct values (a shuffled grid in [-3, 3]) for every sample: no ties anywhere."""
    generator = torch.Generator().manual_seed(seed)
    n = int(np.prod(sample_shape))
    grid = torch.linspace(-3.0, 3.0, n)
    return torch.stack([grid[torch.randperm(n, generator=generator)] for _ in range(batch)]).view(batch, *sample_shape)


def boosted_groups(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The boosted values, one row per selection group."""
    boost = module.boost_strength.item()
    boosted = x * torch.exp(-boost * module.duty_cycle) if boost > 0 else x
    if isinstance(module, KWinners2d) and module.local:
        return boosted.movedim(1, -1).reshape(-1, x.shape[1])
    return boosted.reshape(x.shape[0], -1)


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    """Run an exported model in onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def op_sequence(path: Path) -> list[str]:
    """The graph's op types in order, Constants left out."""
    return [node.op_type for node in onnx.load(str(path)).graph.node if node.op_type != "Constant"]


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kwta_variant_exports_with_identical_winners(variant: str, option: str, tmp_path: Path) -> None:
    factory, sample_shape = VARIANTS[variant]
    module = trained(factory(**OPTIONS[option]), sample_shape)
    path = export(module, tmp_path / "m.onnx", sample_shape)
    for batch in (1, 8):
        x = separated_input(batch, sample_shape, seed=batch)
        groups = boosted_groups(module, x)
        sorted_groups = groups.sort(dim=1).values
        assert (sorted_groups[:, 1:] > sorted_groups[:, :-1]).all(), "precondition: no tied boosted values"
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_array_equal(run_onnx(path, x), expected)
    ops = op_sequence(path)
    assert "TopK" in ops and ("ScatterElements" in ops) == module.break_ties
    assert all(node.domain == "" for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_exact_ties_survive_in_onnxruntime_too(variant: str, tmp_path: Path) -> None:
    factory, sample_shape = VARIANTS[variant]
    module = trained(factory(boost_strength=0.0), sample_shape)
    path = export(module, tmp_path / "m.onnx", sample_shape)
    x = torch.round(separated_input(8, sample_shape, seed=3))  # many exact ties in every group
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_array_equal(run_onnx(path, x), expected)
    groups = boosted_groups(module, torch.from_numpy(expected))
    assert ((groups != 0).sum(dim=1) > module.k_inference).any(), "ties at the threshold kept extra winners"


def test_boost_factor_is_one_constant_by_default_and_exp_on_request(tmp_path: Path) -> None:
    module = trained(KWinners2d(8, 0.1, k_inference_factor=1.5), (8, 5, 5))
    folded = export(module, tmp_path / "folded.onnx", (8, 5, 5))
    in_graph = export(module, tmp_path / "exp.onnx", (8, 5, 5), fold_boost_factor=False)
    assert "Exp" not in op_sequence(folded)
    assert op_sequence(in_graph)[:2] == ["Exp", "Mul"]
    x = separated_input(4, (8, 5, 5), seed=7)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_array_equal(run_onnx(folded, x), expected)
    np.testing.assert_array_equal(run_onnx(in_graph, x), expected)  # well-separated: exp's last bit cannot matter


EXPECTED_SEQUENCES = {
    ("dim1", "ties_kept"): ["Mul", "TopK", "Slice", "Less", "Cast", "Where"],
    ("local", "ties_kept"): ["Mul", "TopK", "Slice", "Less", "Cast", "Where"],
    ("global", "ties_kept"): ["Mul", "Flatten", "TopK", "Slice", "Reshape", "Less", "Cast", "Where"],
    ("global", "break_ties"): ["Mul", "Flatten", "TopK", "Shape", "ConstantOfShape", "Shape", "Expand",
                               "ScatterElements", "Shape", "Reshape", "Cast", "Where"],
    ("dim1", "relu"): ["Mul", "TopK", "Slice", "Less", "LessOrEqual", "Or", "Cast", "Where"],
}


@pytest.mark.parametrize(("variant", "option"), list(EXPECTED_SEQUENCES))
def test_kwta_subgraph_shape_the_onnx_frontend_relies_on(variant: str, option: str, tmp_path: Path) -> None:
    factory, sample_shape = VARIANTS[variant]
    path = export(trained(factory(**OPTIONS[option]), sample_shape), tmp_path / "m.onnx", sample_shape)
    assert op_sequence(path) == EXPECTED_SEQUENCES[(variant, option)]


class UserKWTA(nn.Module):
    """A user's own nupic-style k-WTA (not from the zoo): kthvalue, a float boost_strength, no break_ties."""

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.k_inference = k
        self.boost_strength = 2.0
        self.register_buffer("duty_cycle", torch.rand(n, generator=torch.Generator().manual_seed(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boosted = x * torch.exp(-self.boost_strength * self.duty_cycle)
        threshold = boosted.kthvalue(x.shape[1] - self.k_inference + 1, dim=1, keepdim=True).values
        return x.masked_fill(boosted < threshold, 0)


def test_a_user_module_calling_kthvalue_needs_the_helper_and_gets_it(tmp_path: Path) -> None:
    model = nn.Sequential(nn.ReLU(), UserKWTA(50, 7))
    with pytest.raises(Exception, match="kthvalue"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 50),), io.BytesIO(), dynamo=False, opset_version=17)
    path = export(model, tmp_path / "user.onnx", (50,))
    x = separated_input(8, (50,), seed=0)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_array_equal(run_onnx(path, x), expected)
    assert ((expected != 0).sum(axis=1) == 7).all()
    assert "TopK" in op_sequence(path)


def test_lazily_sized_kwinners2d_is_sized_before_export(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), KWinners2d(4, 0.1, k_inference_factor=1.0))  # never run before
    path = export(model, tmp_path / "lazy.onnx", (1, 8, 8))
    assert model[1].k_inference == 14  # round(4 * 6 * 6 * 0.1)
    x = separated_input(2, (1, 8, 8), seed=0)
    with torch.no_grad():
        expected = model(x).numpy()
    out = run_onnx(path, x)
    assert ((out != 0).sum(axis=(1, 2, 3)) == 14).all()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_forwards_and_training_mode_are_restored(tmp_path: Path) -> None:
    model = nn.Sequential(KWinners(10, 0.2), KWinners(10, 0.2)).train()
    model[1].eval()  # mixed modes survive
    export(model, tmp_path / "ok.onnx", (10,))
    assert [m.training for m in model.modules()] == [True, True, False]
    assert all("forward" not in vars(m) for m in model)
    broken = nn.Sequential(KWinners(10, 0.2), nn.Linear(3, 3)).train()  # fails on the (B, 10) input
    with pytest.raises(FrontendError):
        export(broken, tmp_path / "broken.onnx", (10,))
    assert broken.training and "forward" not in vars(broken[0])


def test_k_larger_than_group_is_a_frontend_error_and_forwards_are_restored(tmp_path: Path) -> None:
    module = KWinners(10, 0.2).eval()
    module.k_inference = 11
    with pytest.raises(FrontendError, match="fails on the example input"):
        export(module, tmp_path / "m.onnx", (10,))
    assert "forward" not in vars(module)
    with exportable_kwta(module), pytest.raises(FrontendError, match="exceeds the selection group size 10"):
        module(torch.zeros(2, 10))
    assert "forward" not in vars(module)


def test_kwta_like_module_without_boost_strength_is_a_frontend_error(tmp_path: Path) -> None:
    class Incomplete(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k_inference = 2
            self.register_buffer("duty_cycle", torch.zeros(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(FrontendError, match="lacks boost_strength") as info:
        export(nn.Sequential(Incomplete()), tmp_path / "m.onnx", (5,))
    assert info.value.node == "0"
    assert [name for name, _ in find_kwta_modules(nn.Sequential(Incomplete(), KWinners(4, 0.5)))] == ["0", "1"]


def test_argument_errors_are_sparsecc_errors(tmp_path: Path) -> None:
    model = KWinners(10, 0.2)
    with pytest.raises(SparseccError, match="exactly one"):
        export(model, tmp_path / "m.onnx", (10,), example_input=torch.zeros(1, 10))
    with pytest.raises(SparseccError, match="exactly one"):
        export(model, tmp_path / "m.onnx")
    with pytest.raises(FrontendError, match="kthvalue outside"):
        class Bare(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x.kthvalue(2, dim=1).values

        export(Bare(), tmp_path / "m.onnx", (10,))


def test_export_is_deterministic_opset_17_and_dynamic_batch(tmp_path: Path) -> None:
    module = trained(KWinners2d(8, 0.1, k_inference_factor=1.5), (8, 5, 5))
    first = export(module, tmp_path / "a.onnx", (8, 5, 5)).read_bytes()
    second = export(module, tmp_path / "b.onnx", example_input=torch.randn(3, 8, 5, 5)).read_bytes()
    assert first == export(module, tmp_path / "c.onnx", (8, 5, 5)).read_bytes()
    assert first == second  # the example values do not leak into the graph
    proto = onnx.load_from_string(first)
    assert proto.ir_version <= 13 and [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    static = export(module, tmp_path / "static.onnx", (8, 5, 5), dynamic_batch=False)
    assert onnx.load(str(static)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
