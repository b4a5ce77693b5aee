"""Export PyTorch models with k-WTA layers to ONNX (``sparsecc.frontends.torch``).

nupic.torch's k-winners-take-all layers pick their winners with ``torch.kthvalue``, which the ONNX exporter
cannot export. :func:`export` finds every submodule that follows nupic.torch's k-WTA interface (duck
typing: it has ``k_inference``, ``duty_cycle`` and ``boost_strength``; optionally ``local``, ``break_ties``,
``relu``), whatever its class, and for the duration of the export replaces its forward with an equivalent
built on ``torch.topk`` that selects IDENTICAL winners (DESIGN.md §2)::

    boosted = x * exp(-boost_strength * duty_cycle)            # skipped when boost_strength == 0
    ties kept:   thr = topk(boosted_group, k).values[..., k-1]; off = boosted < thr
    break_ties:  off = ones.scatter(topk(boosted_group, k).indices, False)
    relu:        off = off | (boosted <= 0)
    out = x.masked_fill(off, 0)

``boosted < k-th largest`` keeps every unit tied with the k-th largest value, exactly like
``boosted < kthvalue(n - k + 1)``. The selection group is dim 1 for 1-D modules (no ``local`` attribute) and
for ``local=True`` 2-D modules, and the flattened C·H·W of each sample for ``local=False`` 2-D modules.

By default the boost factor ``exp(-boost_strength * duty_cycle)`` is evaluated by torch at export time and
stored as one constant, so the exported graph multiplies by exactly the float32 factors that the torch module
uses (an in-graph ``Exp`` is evaluated by each runtime's own ``exp``, which differs from torch's in the last
bit for a few percent of inputs, and could move a winner at an exact near-tie). ``fold_boost_factor=False``
keeps the ``Exp`` in the graph.

The exported k-WTA subgraphs (opset 17), ``boost`` being the constant factor:

* 1-D / local 2-D, ties kept: ``Mul(x, boost) -> TopK(axis=1) -> Slice(k-1:k, axis 1) -> Less(boosted, ·)
  -> Cast(bool) -> Where(·, 0, x)``
* global 2-D, ties kept: ``Mul -> Flatten(axis=1) -> TopK(axis=1) -> Slice -> Reshape(-1,1,1,1)
  -> Less(boosted, ·) -> Cast -> Where``
* break_ties: ``Mul -> [Flatten] -> TopK -> indices -> ScatterElements(ones mask, indices, false)
  -> [Reshape(Shape(x))] -> Cast -> Where``
* relu adds ``LessOrEqual(boosted, 0) -> Or`` before the ``Cast``.
"""

from __future__ import annotations

import contextlib
import io
import math
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from ..compiler.errors import FrontendError

__all__ = [
    "MAX_IR_VERSION",
    "KWTALayer",
    "export",
    "exportable_kwta",
    "find_kwta_modules",
    "kwta_topk",
]

#: Highest ONNX IR version that onnxruntime 1.31 loads.
MAX_IR_VERSION = 13

_REQUIRED = ("k_inference", "duty_cycle", "boost_strength")
_NO_FORWARD = object()  # marks a module whose forward was its class's (no instance attribute to restore)


@dataclass(frozen=True)
class KWTALayer:
    """What the export helper read from one k-WTA module.

    ``selection`` is ``"dim1"`` (1-D module: dim 1 of the input), ``"local"`` (2-D, over channels at each
    position) or ``"global"`` (2-D, over the flattened C·H·W of each sample).
    """

    name: str
    k: int
    boost_strength: float
    selection: str
    break_ties: bool
    relu: bool


def _boost_strength_of(label: str, module: nn.Module) -> float:
    """The boost strength the module's own forward uses (nupic keeps a cached Python float)."""
    cached = getattr(module, "_cached_boost_strength", None)
    value = cached if cached is not None else module.boost_strength
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrontendError(f"module '{label}': boost_strength must be a number, got {value!r}", node=label,
                            op_type=type(module).__name__)
    return float(value)


def _describe(name: str, module: nn.Module) -> KWTALayer:
    """Read and validate the k-WTA interface of ``module``."""
    label = name or "<root>"
    missing = [attr for attr in _REQUIRED if not hasattr(module, attr) or getattr(module, attr) is None]
    if missing:
        raise FrontendError(
            f"module '{label}' ({type(module).__name__}) looks like a k-WTA layer but lacks "
            f"{', '.join(missing)}; a k-WTA module needs {', '.join(_REQUIRED)} "
            "(nupic.torch's KWinners interface)",
            node=label,
            op_type=type(module).__name__,
        )
    k = module.k_inference
    if isinstance(k, torch.Tensor) and k.numel() == 1:
        k = k.item()
    if isinstance(k, bool) or not isinstance(k, int | float) or int(k) != k or k < 0:
        raise FrontendError(f"module '{label}': k_inference must be a non-negative int, got {k!r}",
                            node=label, op_type=type(module).__name__)
    if not isinstance(module.duty_cycle, torch.Tensor):
        raise FrontendError(f"module '{label}': duty_cycle must be a tensor", node=label,
                            op_type=type(module).__name__)
    boost = _boost_strength_of(label, module)
    if boost < 0 or not math.isfinite(boost):
        raise FrontendError(f"module '{label}': boost_strength must be finite and >= 0, got {boost}",
                            node=label, op_type=type(module).__name__)
    selection = ("local" if module.local else "global") if hasattr(module, "local") else "dim1"
    return KWTALayer(
        name=label,
        k=int(k),
        boost_strength=boost,
        selection=selection,
        break_ties=bool(getattr(module, "break_ties", False)),
        relu=bool(getattr(module, "relu", False)),
    )


def _looks_like_kwta(module: nn.Module) -> bool:
    """Whether ``module`` claims nupic.torch's k-WTA interface (fully or partially)."""
    if hasattr(module, "k_inference"):
        return True
    return hasattr(module, "duty_cycle") and hasattr(module, "boost_strength")


def find_kwta_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All submodules (``model`` included) that follow nupic.torch's k-WTA interface, in module order."""
    return [(name, module) for name, module in model.named_modules() if _looks_like_kwta(module)]


def kwta_topk(
    x: torch.Tensor,
    boost_factor: torch.Tensor | None,
    k: int,
    selection: str,
    break_ties: bool = False,
    relu: bool = False,
) -> torch.Tensor:
    """Exportable k-WTA (TopK form): same winners as nupic.torch's ``kthvalue`` form.

    ``boost_factor`` multiplies ``x`` to choose winners (``None``: no boosting); ``selection`` is ``"dim1"``,
    ``"local"`` or ``"global"`` (see :class:`KWTALayer`).
    """
    if k == 0:
        return torch.zeros_like(x)
    boosted = x * boost_factor if boost_factor is not None else x
    group = boosted.flatten(1) if selection == "global" else boosted
    if break_ties:
        indices = group.topk(k, dim=1, largest=True, sorted=False).indices
        off = torch.ones_like(group, dtype=torch.bool).scatter(1, indices, 0)
        if selection == "global":
            off = off.view_as(boosted)
    else:
        threshold = group.topk(k, dim=1, largest=True, sorted=True).values[:, k - 1 : k]
        if selection == "global":
            threshold = threshold.reshape([-1] + [1] * (boosted.dim() - 1))
        off = boosted < threshold
    if relu:
        off = off | (boosted <= 0)
    return x.masked_fill(off, 0)


def _make_forward(
    layer: KWTALayer, module: nn.Module, fold_boost_factor: bool
) -> Callable[..., torch.Tensor]:
    """Build the TopK-based replacement forward for one k-WTA module."""
    folded: torch.Tensor | None = None
    if layer.boost_strength > 0 and fold_boost_factor:
        with torch.no_grad():
            folded = torch.exp(-layer.boost_strength * module.duty_cycle.detach()).clone()

    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise FrontendError(f"k-WTA input needs a batch and a feature dim, got shape {tuple(x.shape)}",
                                node=layer.name, op_type=type(self).__name__)
        if layer.selection == "global" and x.dim() != 4:
            raise FrontendError(f"a 2-D k-WTA (local=False) expects (B, C, H, W), got shape {tuple(x.shape)}",
                                node=layer.name, op_type=type(self).__name__)
        group = math.prod(int(d) for d in x.shape[1:]) if layer.selection == "global" else int(x.shape[1])
        if layer.k > group:
            raise FrontendError(f"k_inference={layer.k} exceeds the selection group size {group}",
                                node=layer.name, op_type=type(self).__name__)
        if layer.boost_strength == 0:
            factor = None
        elif folded is not None:
            factor = folded
        else:
            factor = torch.exp(-layer.boost_strength * self.duty_cycle)
        return kwta_topk(x, factor, layer.k, layer.selection, layer.break_ties, layer.relu)

    return forward


@contextlib.contextmanager
def exportable_kwta(model: nn.Module, fold_boost_factor: bool = True) -> Iterator[list[KWTALayer]]:
    """Within the context every k-WTA submodule of ``model`` runs its TopK form; restores forwards on exit.

    Reads each module's ``k_inference`` as it is on entry, so lazily sized modules (nupic's ``KWinners2d``)
    must have run a forward before. Yields the layers found.
    """
    found = find_kwta_modules(model)
    layers = [_describe(name, module) for name, module in found]
    saved: list[tuple[nn.Module, object]] = []
    try:
        for layer, (_, module) in zip(layers, found, strict=True):
            saved.append((module, module.__dict__.get("forward", _NO_FORWARD)))
            module.forward = types.MethodType(_make_forward(layer, module, fold_boost_factor), module)
        yield layers
    finally:
        for module, previous in reversed(saved):
            if previous is _NO_FORWARD:
                del module.forward
            else:
                module.forward = previous


def _export_bytes(
    model: nn.Module,
    example: torch.Tensor,
    opset: int,
    dynamic_batch: bool,
    input_name: str,
    output_name: str,
) -> bytes:
    """Run the legacy TorchScript exporter into memory."""
    buffer = io.BytesIO()
    dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            export_params=True,
        )
    return buffer.getvalue()


def export(
    model: nn.Module,
    path: str | Path,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_input: torch.Tensor | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "output",
    fold_boost_factor: bool = True,
) -> Path:
    """Export ``model`` (eval mode) to an ONNX file at ``path``, rewriting its k-WTA layers to TopK form.

    Give either ``input_shape`` (one sample, WITHOUT the batch dimension; a seeded random batch of 2 is
    traced) or ``example_input`` (a full batch). With ``dynamic_batch`` the batch dimension of the input and
    output is symbolic (``"batch"``). The model runs once in eval mode before the export (this sizes nupic's
    lazily sized ``KWinners2d``); every module's training flag and forward are restored afterwards, also
    on error. The file is checked with ``onnx.checker`` and its IR version capped at :data:`MAX_IR_VERSION`; the
    same model gives byte-identical files. Raises :class:`~sparsecc.compiler.errors.FrontendError` on any
    failure.
    """
    if (input_shape is None) == (example_input is None):
        raise FrontendError("export needs exactly one of input_shape (without batch) or example_input")
    if example_input is None:
        assert input_shape is not None
        if not all(isinstance(d, int) and d > 0 for d in input_shape):
            raise FrontendError(f"input_shape must be positive ints (no batch dim), got {input_shape}")
        generator = torch.Generator().manual_seed(0)
        example_input = torch.randn((2, *input_shape), generator=generator)
    if not isinstance(example_input, torch.Tensor):
        raise FrontendError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    path = Path(path)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            try:
                model(example_input)
            except Exception as error:
                raise FrontendError(f"the model fails on the example input of shape "
                                    f"{tuple(example_input.shape)}: {error}") from error
        with exportable_kwta(model, fold_boost_factor):
            try:
                data = _export_bytes(model, example_input, opset, dynamic_batch, input_name, output_name)
            except FrontendError:
                raise
            except Exception as error:
                hint = ""
                if "kthvalue" in str(error):
                    hint = (" (a kthvalue outside any module with nupic.torch's k-WTA interface: wrap the"
                            " k-WTA in a module with k_inference, duty_cycle and boost_strength)")
                raise FrontendError(f"torch.onnx.export failed: {error}{hint}") from error
    finally:
        for module, training in modes:
            module.training = training
    proto = onnx.load_from_string(data)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise FrontendError(f"the exported model does not pass onnx.checker: {error}") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path
