"""The k-WTA form matrix: k-WTA written the ways users' code writes it, exported by both torch exporters.

Each form is a nupic.torch-style ``KWinners`` / ``KWinners2d`` written here by hand (``topk`` in place of
``kthvalue``, which torch cannot export), in one way of writing the threshold, the comparison, the
selection and the boost. Every form is exported by ``torch.onnx.export(dynamo=False)`` (one model per form,
dynamic batch) and by ``dynamo=True`` (all forms in one module, exported once because the dynamo exporter
takes seconds per call; each form's subgraph is then extracted by its output). For each form and exporter:
the import holds exactly one ``sparse.kwta`` with the module's k, axes, ties and boost factors and nothing
left of the subgraph, and the interpreter agrees with onnxruntime (tie-aware) at batch 1 and 8. Forms that
are not a k-WTA get one warning naming the node and what did not match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from support import ort_run
from torch import nn

import sparsecc
from sparsecc.compiler.cli import main
from sparsecc.compiler.compare import compare_outputs, find_near_ties
from sparsecc.compiler.cost_model import layer_costs, mac_reduction
from sparsecc.compiler.errors import KWTANotRecognisedWarning, SparseccWarning
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.core import Module
from sparsecc.frontends.onnx import import_onnx

LEFTOVERS = (ops.TopK, ops.ScatterElements, ops.Slice, ops.Gather, ops.CompareOp, ops.Where, ops.Not, ops.Or,
             ops.Cast, ops.Mul)
EXPORTERS = ("torchscript", "dynamo")
DYNAMO_OPSET = 21  # the dynamo exporter writes opset 18 and converts; GSC below is exported at 18


@dataclasses.dataclass(frozen=True)
class Form:
    """How one k-WTA is written (each field one independent choice)."""

    threshold: str = "slice"  # slice [:, -1:] | gather [:, -1] | index [:, k-1] | min | amin | sort | sort_up
    expand: bool = False  # broadcast the (global) threshold with expand_as
    compare: str = "less"  # less | greater | not_ge | le_keep | ge_where | flat | strict_le (not a k-WTA)
    select: str = "masked_fill"  # masked_fill | inplace | mul | onehot, argmax (one-hot, break_ties only)
    boost: str = "exp"  # exp (x * exp(-b * duty) in the graph) | const (a precomputed factor) | none
    break_ties: bool = False
    relu: bool = False


class KWinnersBase(nn.Module):
    """nupic.torch's k-WTA interface at inference: ``k_inference``, ``duty_cycle``, ``boost_strength``."""

    def __init__(self, n: int, percent_on: float, form: Form, duty_shape: tuple[int, ...], seed: int,
                 boost_strength: float = 1.5, k_inference_factor: float = 1.0) -> None:
        super().__init__()
        self.form, self.n = form, n
        self.k = round(n * percent_on)
        self.k_inference = 1 if form.select == "argmax" else int(self.k * k_inference_factor)
        self.boost_strength = 0.0 if form.boost == "none" else boost_strength
        duty = torch.rand(duty_shape, generator=torch.Generator().manual_seed(seed)) * 0.2
        self.register_buffer("duty_cycle", duty)
        self.register_buffer("factor", torch.exp(-self.boost_strength * duty))
        self.local = True  # overridden by global KWinners2d

    def boosted(self, x: torch.Tensor) -> torch.Tensor:
        if self.boost_strength == 0:
            return x.detach()
        if self.form.boost == "const":
            return x.detach() * self.factor
        return x.detach() * torch.exp(-self.boost_strength * self.duty_cycle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, k, n = self.form, self.k_inference, x.shape[0]
        boosted = self.boosted(x)
        flat = not self.local
        group = boosted.reshape(n, -1) if flat else boosted
        if f.select == "argmax":  # the winner-take-all special case, k = 1
            return x * torch.zeros_like(group).scatter(1, group.argmax(dim=1, keepdim=True), 1.0).view_as(x)
        if f.break_ties:
            indices = group.topk(k, dim=1, sorted=False).indices
            if f.select == "onehot":
                return x * torch.zeros_like(group).scatter(1, indices, 1.0).view_as(x)
            off = torch.ones_like(group, dtype=torch.bool).scatter(1, indices, 0).view_as(x)
        else:
            values = group.topk(k, dim=1).values
            thr = {
                "slice": lambda: values[:, -1:],
                "gather": lambda: values[:, -1].unsqueeze(1),
                "index": lambda: values[:, k - 1].unsqueeze(1) if self.local else values[:, k - 1].view(-1, 1),
                "min": lambda: values.min(dim=1, keepdim=True).values,
                "amin": lambda: values.amin(dim=1, keepdim=True),
                "sort": lambda: group.sort(dim=1, descending=True).values[:, k - 1:k],
                "sort_up": lambda: group.sort(dim=1).values[:, group.shape[1] - k:group.shape[1] - k + 1],
            }[f.threshold]()
            if flat and f.compare != "flat":
                thr = thr.reshape(-1, 1, 1, 1)
                if f.expand:
                    thr = thr.expand_as(x)
            b = group if f.compare == "flat" else boosted
            xs = x.reshape(n, -1) if f.compare == "flat" else x
            if f.compare == "le_keep":
                return xs * (thr <= b).to(x.dtype)
            if f.compare == "ge_where":
                return torch.where(b >= thr, xs, torch.zeros_like(xs))
            off = {"less": lambda: b < thr, "flat": lambda: b < thr, "greater": lambda: thr > b,
                   "not_ge": lambda: ~(b >= thr), "strict_le": lambda: b <= thr}[f.compare]()
            if f.compare == "flat":
                off = off | (b <= 0) if f.relu else off
                return xs.masked_fill(off, 0).view_as(x)
        if f.relu:
            off = off | (boosted <= 0)
        if f.select == "mul":
            return x * (~off).to(x.dtype)
        if f.select == "inplace":
            return x.masked_fill_(off, 0)
        return x.masked_fill(off, 0)


class KWinners(KWinnersBase):
    """1-D k-WTA over dim 1 of (B, n)."""

    def __init__(self, n: int, percent_on: float, form: Form, seed: int) -> None:
        super().__init__(n, percent_on, form, (n,), seed)


class KWinners2d(KWinnersBase):
    """2-D k-WTA: over the flattened C*H*W (``local=False``) or over channels per position; duty per channel."""

    def __init__(self, shape: tuple[int, int, int], percent_on: float, form: Form, seed: int,
                 local: bool = False) -> None:
        c, h, w = shape
        super().__init__(c if local else c * h * w, percent_on, form, (1, c, 1, 1), seed)
        self.local = local


KINDS = {  # kind -> (input shape without batch, module factory)
    "1d": ((24,), lambda form, seed: KWinners(24, 0.2, form, seed)),  # k = 5
    "global": ((4, 5, 5), lambda form, seed: KWinners2d((4, 5, 5), 0.17, form, seed)),  # k = 17 of 100
    "local": ((6, 3, 3), lambda form, seed: KWinners2d((6, 3, 3), 0.33, form, seed, local=True)),  # k = 2 of 6
}
OVER = {"1d": (1,), "global": (1, 2, 3), "local": (1,)}

FORMS: dict[str, tuple[str, Form]] = {
    "1d_nupic": ("1d", Form()),
    "1d_gather_last": ("1d", Form(threshold="gather")),
    "1d_index_k-1": ("1d", Form(threshold="index")),
    "1d_reducemin": ("1d", Form(threshold="min")),
    "1d_sort_desc": ("1d", Form(threshold="sort")),
    "1d_sort_asc": ("1d", Form(threshold="sort_up")),
    "1d_greater": ("1d", Form(compare="greater")),
    "1d_not_ge": ("1d", Form(compare="not_ge")),
    "1d_le_keep_mul": ("1d", Form(compare="le_keep")),
    "1d_where_keep": ("1d", Form(compare="ge_where")),
    "1d_mul_not_off": ("1d", Form(select="mul")),
    "1d_no_boost": ("1d", Form(boost="none")),
    "1d_const_boost": ("1d", Form(boost="const")),
    "1d_relu": ("1d", Form(relu=True)),
    "1d_inplace": ("1d", Form(select="inplace")),
    "1d_break_ties": ("1d", Form(break_ties=True)),
    "1d_onehot": ("1d", Form(break_ties=True, select="onehot")),
    "1d_argmax_onehot": ("1d", Form(break_ties=True, select="argmax")),
    "2d_global_nupic": ("global", Form()),
    "2d_global_flat": ("global", Form(compare="flat")),
    "2d_global_amin": ("global", Form(threshold="amin")),
    "2d_global_expand": ("global", Form(expand=True, compare="not_ge")),
    "2d_global_gather_greater": ("global", Form(threshold="gather", compare="greater")),
    "2d_global_relu": ("global", Form(relu=True)),
    "2d_global_no_boost": ("global", Form(boost="none", select="mul")),
    "2d_global_break_ties": ("global", Form(break_ties=True)),
    "2d_global_onehot": ("global", Form(break_ties=True, select="onehot", boost="const")),
    "2d_local": ("local", Form()),
    "2d_local_index": ("local", Form(threshold="index", compare="greater")),
    "2d_local_break_ties": ("local", Form(break_ties=True, relu=True)),
}
#: Written like a k-WTA but not one: ``b <= thr`` also zeroes the units tied with the k-th largest value.
NOT_KWTA = {"1d_strict_le": ("1d", Form(compare="strict_le"))}
#: Forms the dynamo exporter cannot export (each with why): none today. A form listed here is tested with the
#: TorchScript exporter only, and its dynamo case fails if the exporter starts to handle it (update the list).
DYNAMO_CANNOT: dict[str, str] = {}


def build(name: str) -> nn.Module:
    kind, form = {**FORMS, **NOT_KWTA}[name]
    seed = sorted({**FORMS, **NOT_KWTA}).index(name)  # distinct duty cycles: no subgraph shared across forms
    return KINDS[kind][1](form, seed).eval()


def sample(name: str, batch: int, seed: int = 0) -> np.ndarray:
    shape = KINDS[{**FORMS, **NOT_KWTA}[name][0]][0]
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


@contextlib.contextmanager
def quiet() -> object:
    """Silence the exporters' console chatter (they print progress and log warnings)."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def torchscript_export(model: nn.Module, x: torch.Tensor, opset: int = 17, dynamic: bool = True) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with quiet():
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None)
    return onnx.load_from_string(buffer.getvalue())


class AllForms(nn.Module):
    """Every form side by side (one input per kind), for one dynamo export."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.layers = nn.ModuleList([build(n) for n in names])

    def forward(self, x1: torch.Tensor, xg: torch.Tensor, xl: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = {"1d": x1, "global": xg, "local": xl}
        kinds = [{**FORMS, **NOT_KWTA}[n][0] for n in self.names]
        return tuple(layer(inputs[kind].clone()) for kind, layer in zip(kinds, self.layers, strict=True))


#: Forms also exported with a fixed batch (FIXED_BATCH); the others have a dynamic batch.
FIXED = ["1d_nupic", "1d_break_ties", "2d_global_nupic", "2d_global_flat", "2d_global_break_ties", "2d_local"]
FIXED_BATCH = 2
KIND_INPUTS = {"1d": "x1", "global": "xg", "local": "xl"}


class DynamicAndFixed(nn.Module):
    """All forms on dynamic-batch inputs x1, xg, xl and the FIXED forms again on fixed-batch inputs f1, fg, fl."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.dynamic, self.fixed = AllForms(names), AllForms(FIXED)

    def forward(self, x1: torch.Tensor, xg: torch.Tensor, xl: torch.Tensor, f1: torch.Tensor, fg: torch.Tensor,
                fl: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (*self.dynamic(x1, xg, xl), *self.fixed(f1, fg, fl))


@pytest.fixture(scope="module")
def dynamo_all() -> tuple[onnx.ModelProto, list[str]]:
    """All dynamo-exportable forms exported at once, with the forms in output order (fixed-batch ones last,
    named ``NAME@fixed``)."""
    names = [n for n in (*FORMS, *NOT_KWTA) if n not in DYNAMO_CANNOT]
    xs = tuple(torch.from_numpy(sample(n, FIXED_BATCH)) for n in ("1d_nupic", "2d_global_nupic", "2d_local"))
    batch = torch.export.Dim("batch", min=1)
    with quiet():
        program = torch.onnx.export(DynamicAndFixed(names).eval(), (*xs, *(x.clone() for x in xs)), dynamo=True,
                                    opset_version=DYNAMO_OPSET, input_names=["x1", "xg", "xl", "f1", "fg", "fl"],
                                    dynamic_shapes=({0: batch}, {0: batch}, {0: batch}, None, None, None))
    return program.model_proto, [*names, *(f"{n}@fixed" for n in FIXED)]


_MODELS: dict[tuple[str, str, bool], onnx.ModelProto] = {}


def exported(name: str, exporter: str, dynamo_all: tuple[onnx.ModelProto, list[str]],
             fixed: bool = False) -> onnx.ModelProto:
    """The form's ONNX model with one input and one output: its own export (TorchScript) or its subgraph
    extracted from the all-forms dynamo export; ``fixed``: with a fixed batch of FIXED_BATCH."""
    key = (name, exporter, fixed)
    if key not in _MODELS:
        if exporter == "torchscript":
            x = torch.from_numpy(sample(name, FIXED_BATCH))
            _MODELS[key] = torchscript_export(build(name), x, dynamic=not fixed)
        else:
            model, names = dynamo_all
            source = KIND_INPUTS[{**FORMS, **NOT_KWTA}[name][0]]
            source = source.replace("x", "f") if fixed else source
            output = model.graph.output[names.index(f"{name}@fixed" if fixed else name)].name
            _MODELS[key] = onnx.utils.Extractor(model).extract_model([source], [output])
    return _MODELS[key]


def import_quietly(model: onnx.ModelProto) -> Module:
    """Import, failing on any sparsecc warning (recognised forms must not warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparseccWarning)
        return import_onnx(model)


def _expected_boost(layer: KWinnersBase, rank: int) -> np.ndarray | None:
    if layer.boost_strength == 0:
        return None
    factor = layer.factor.numpy()
    return factor.reshape((1,) * (rank - factor.ndim) + factor.shape)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(FORMS))
def test_form_becomes_one_kwta_op(name: str, exporter: str, dynamo_all) -> None:
    if exporter == "dynamo" and name in DYNAMO_CANNOT:
        with pytest.raises(Exception), quiet():  # noqa: B017 - whatever the exporter raises; the list must stay true
            torch.onnx.export(build(name), (torch.from_numpy(sample(name, 2)),), dynamo=True)
        return
    module = import_quietly(exported(name, exporter, dynamo_all))
    layer = build(name)
    kind, form = FORMS[name]
    (kwta,) = module.walk(ops.KWinners)
    assert (kwta.attr("k"), kwta.attr("over"), kwta.attr("ties")) == (
        layer.k_inference, OVER[kind], "break" if form.break_ties else "keep")
    expected = _expected_boost(layer, len(KINDS[kind][0]) + 1)
    boost = kwta.operand("boost")
    if expected is None:
        assert boost is None
    else:
        assert boost is not None
        # the exporter or canonicalize evaluated exp(-b * duty): float32 rounding of exp may differ in the last bit
        np.testing.assert_allclose(boost.owner.value, expected, rtol=1e-6)
    assert module.count(LEFTOVERS) == 0, [op.name for op in module.walk(LEFTOVERS)]
    assert module.count(ops.Relu) == int(form.relu)
    assert kwta.result.type.encoding is not None  # the #kwta bound that the layers after it exploit


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(FORMS))
def test_form_interpreter_matches_onnxruntime(name: str, exporter: str, dynamo_all) -> None:
    if exporter == "dynamo" and name in DYNAMO_CANNOT:
        pytest.fail(f"the dynamo exporter cannot export {name}: {DYNAMO_CANNOT[name]}")
    model = exported(name, exporter, dynamo_all)
    module = import_quietly(model)
    input_name = model.graph.input[0].name
    for batch in (1, 8):
        feeds = {input_name: sample(name, batch, seed=batch)}
        near = find_near_ties(module, feeds)
        result = compare_outputs(near.outputs, ort_run(model, feeds), near)
        assert result.ok and not result.excused, f"batch {batch}: {result.summary()}"


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", FIXED)
def test_fixed_batch_form_becomes_one_kwta_op_and_matches_onnxruntime(name: str, exporter: str, dynamo_all) -> None:
    model = exported(name, exporter, dynamo_all, fixed=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == FIXED_BATCH
    module = import_quietly(model)
    kind, form = FORMS[name]
    (kwta,) = module.walk(ops.KWinners)
    assert (kwta.attr("k"), kwta.attr("over"), kwta.attr("ties")) == (
        build(name).k_inference, OVER[kind], "break" if form.break_ties else "keep")
    assert module.count(LEFTOVERS) == 0
    feeds = {model.graph.input[0].name: sample(name, FIXED_BATCH, seed=3)}
    near = find_near_ties(module, feeds)
    result = compare_outputs(near.outputs, ort_run(model, feeds), near)
    assert result.ok and not result.excused, result.summary()


@pytest.mark.parametrize("opset", [13, 15, 17, 19, 21])
@pytest.mark.parametrize("name", ["1d_reducemin", "2d_global_nupic", "2d_local_break_ties"])
def test_torchscript_opsets_13_to_21(name: str, opset: int) -> None:
    model = torchscript_export(build(name), torch.from_numpy(sample(name, 2)), opset=opset)
    module = import_quietly(model)
    assert module.count(ops.KWinners) == 1 and module.count(LEFTOVERS) == 0
    feeds = {"x": sample(name, 8, seed=opset)}
    near = find_near_ties(module, feeds)
    assert compare_outputs(near.outputs, ort_run(model, feeds), near).ok


#: The llvm subset: one form of each kind (1-D, global, local) and both ties modes, in one model per exporter.
#: k-WTA kernels compile on every x86 ISA today (the sparse conv/linear kernels that abort on CPUs without
#: AVX-512 are not involved).
LLVM_SUBSET = ["1d_le_keep_mul", "2d_global_nupic", "2d_local_break_ties"]
SOURCES = ("x1", "xg", "xl")


def subset_model(names: list[str], exporter: str, dynamo_all: tuple[onnx.ModelProto, list[str]]) -> onnx.ModelProto:
    """One model computing the forms ``names`` (one of each kind) side by side."""
    if exporter == "dynamo":
        model, all_names = dynamo_all
        outputs = [model.graph.output[all_names.index(n)].name for n in names]
        return onnx.utils.Extractor(model).extract_model(list(SOURCES), outputs)
    xs = tuple(torch.from_numpy(sample(n, 2)) for n in ("1d_nupic", "2d_global_nupic", "2d_local"))
    buffer = io.BytesIO()
    with quiet():
        torch.onnx.export(AllForms(names).eval(), xs, buffer, dynamo=False, opset_version=17, input_names=list(SOURCES),
                          dynamic_axes={n: {0: "N"} for n in SOURCES})
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_forms_compiled_for_llvm_match_onnxruntime(exporter: str, dynamo_all) -> None:
    model = subset_model(LLVM_SUBSET, exporter, dynamo_all)
    module = import_quietly(model)
    assert module.count(ops.KWinners) == len(LLVM_SUBSET) and module.count(LEFTOVERS) == 0
    compiled = sparsecc.compile(module, target="llvm")
    for batch in (1, 8):
        feeds = {s: sample(n, batch, seed=batch) for s, n in zip(SOURCES, ("1d_nupic", "2d_global_nupic", "2d_local"),
                                                                   strict=True)}
        near = find_near_ties(module, feeds)
        result = compare_outputs(compiled.run(None, feeds), ort_run(model, feeds), near)
        assert result.ok and not result.excused, f"batch {batch}: {result.summary()}"


# -- what is not a k-WTA is said, once per node ----------------------------------------------------------------
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_tie_dropping_threshold_is_not_recognised_and_warned_once(exporter: str, dynamo_all) -> None:
    model = exported("1d_strict_le", exporter, dynamo_all)
    with pytest.warns(KWTANotRecognisedWarning) as record:
        module = import_onnx(model)
    assert len(record) == 1
    message = str(record[0].message)
    (node,) = [n.name for n in model.graph.node if n.op_type == "TopK"]
    assert message.startswith(f"node '{node}' (TopK)")
    assert "(TopK): k-WTA not recognised: LessOrEqual zeroes the units tied with the threshold" in message
    assert message.startswith("node '") and message.endswith("; the layer runs dense")
    assert module.count(ops.KWinners) == 0 and module.count(ops.TopK) == 1  # left as it was: it still runs
    feeds = {model.graph.input[0].name: sample("1d_strict_le", 8)}
    np.testing.assert_allclose(sparsecc.compiler.interpreter.interpret(module, feeds)[0],
                               ort_run(model, feeds)[0], rtol=1e-6)


@pytest.fixture(scope="module")
def unrecognised_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("forms") / "strict_le.onnx"
    onnx.save(torchscript_export(build("1d_strict_le"), torch.from_numpy(sample("1d_strict_le", 2))), path)
    return path


@pytest.mark.parametrize("command", ["import", "stats", "opt"])
def test_cli_prints_one_warning_line_per_unrecognised_node(command: str, unrecognised_file: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, str(unrecognised_file)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    (node,) = [n.name for n in onnx.load(unrecognised_file).graph.node if n.op_type == "TopK"]
    assert lines == [f"warning: node '{node}' (TopK): k-WTA not recognised: LessOrEqual zeroes the units tied "
                     "with the threshold (k-WTA keeps them); the layer runs dense"]
    if command == "stats":
        assert "k-WTA not recognised" in captured.out and "runs dense" in captured.out


@pytest.mark.parametrize("command", [["import"], ["stats"], ["opt"], ["compile", "--target", "llvm"]])
def test_cli_strict_makes_it_an_error_and_writes_nothing(command: list[str], unrecognised_file: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out"
    output = ["-o", str(target)] if command[0] != "stats" else []
    assert main([*command, str(unrecognised_file), "--strict", *output]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparsecc: error: node '/TopK' (TopK): k-WTA not recognised"), err
    assert err[0].endswith("the layer runs dense (--strict)")
    assert list(tmp_path.iterdir()) == []


# -- a nupic.torch-style GSCSparseCNN from user code ------------------------------------------------------------
def _fixed_fan_in(layer: nn.Conv2d | nn.Linear, keep: int, seed: int) -> nn.Module:
    """Zero all but ``keep`` randomly chosen weights of each output unit (fixed fan-in weight sparsity)."""
    with torch.no_grad():
        flat = layer.weight.view(layer.weight.shape[0], -1)
        generator = torch.Generator().manual_seed(seed)
        for row in flat:
            row[torch.randperm(row.numel(), generator=generator)[keep:]] = 0.0
    return layer


class UserKWinners2d(nn.Module):
    """KWinners2d as users write it (DESIGN.md §2, global): boost, topk over the flattened sample, masked_fill."""

    def __init__(self, shape: tuple[int, int, int], percent_on: float, boost_strength: float = 1.5) -> None:
        super().__init__()
        self.k, self.boost_strength = round(math.prod(shape) * percent_on), boost_strength
        self.register_buffer("duty_cycle", torch.rand(1, shape[0], 1, 1) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        boosted = x.detach() * torch.exp(-self.boost_strength * self.duty_cycle)
        thr = boosted.reshape(n, -1).topk(self.k, dim=1).values[:, -1:].reshape(-1, 1, 1, 1)
        return x.masked_fill(boosted < thr, 0)


class UserKWinners(nn.Module):
    """KWinners (1-D) as users write it."""

    def __init__(self, n: int, percent_on: float, boost_strength: float = 1.5) -> None:
        super().__init__()
        self.k, self.boost_strength = round(n * percent_on), boost_strength
        self.register_buffer("duty_cycle", torch.rand(n) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boosted = x.detach() * torch.exp(-self.boost_strength * self.duty_cycle)
        thr = boosted.topk(self.k, dim=1).values[:, -1:]
        return x.masked_fill(boosted < thr, 0)


def user_gsc_sparse_cnn() -> nn.Module:
    """nupic.torch's GSCSparseCNN defaults (DESIGN.md §3) from user-side modules, eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(
        _fixed_fan_in(nn.Conv2d(1, 64, 5), 12, 1),  # 12 of 25 weights per filter
        nn.BatchNorm2d(64, affine=False),
        UserKWinners2d((64, 28, 28), 0.095),  # k = 4767
        nn.MaxPool2d(2),
        _fixed_fan_in(nn.Conv2d(64, 64, 5), 320, 2),  # 320 of 1600
        nn.BatchNorm2d(64, affine=False),
        UserKWinners2d((64, 10, 10), 0.125),  # k = 800
        nn.MaxPool2d(2),
        nn.Flatten(),
        _fixed_fan_in(nn.Linear(1600, 1000), 160, 3),  # 160 of 1600
        nn.BatchNorm1d(1000, affine=False),
        UserKWinners(1000, 0.1),  # k = 100
        nn.Linear(1000, 12),
        nn.LogSoftmax(dim=1))
    return model.eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_user_gsc_sparse_cnn_has_the_zoo_mac_reduction(exporter: str, tmp_path: Path, zoo_onnx,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = user_gsc_sparse_cnn()
    x = torch.randn(2, 1, 32, 32)
    path = tmp_path / f"user_gsc_{exporter}.onnx"
    if exporter == "torchscript":
        onnx.save(torchscript_export(model, x, opset=17), path)
    else:
        with quiet():
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        onnx.save(program.model_proto, path)
    module = import_quietly(onnx.load(path))
    assert [op.attr("k") for op in module.walk(ops.KWinners)] == [4767, 800, 100]
    zoo = mac_reduction(layer_costs(import_onnx(zoo_onnx("gsc_sparse_cnn"))))
    assert f"{mac_reduction(layer_costs(module)):.1f}" == f"{zoo:.1f}" == "9.0"
    assert main(["stats", str(path)]) == 0
    captured = capsys.readouterr()
    assert "MAC reduction 9.0x" in captured.out and captured.err == ""
