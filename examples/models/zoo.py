"""The model zoo: named, deterministic builds of the seeds' networks and their ONNX export.

Nobody here can download GSC or CIFAR weights, so :func:`build` makes a model with seeded random weights and
its real sparsity masks, then runs a few seeded random batches through it in training mode (no optimizer) so
that BatchNorm running statistics and k-WTA duty cycles hold non-trivial values, and returns it in eval mode.
A compiler must be exact on any weights, so that is enough (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...frontends.torch import export as export_module
from .cifar import CIFAR_INPUT_SHAPE, VGG19, NotSoDenseNet, SparseVGG19
from .gsc import (
    GSC_INPUT_SHAPE,
    DenseCNN2,
    DenseSmall1,
    DenseSmall2,
    GSCFPGASparseCNN,
    GSCSparseCNN,
    GSCSuperSparseCNN,
)

__all__ = ["ZOO", "LayerMacs", "MacCounts", "ZooEntry", "build", "count_macs", "export"]

#: Batches (and their size) of random inputs used to populate BatchNorm statistics and duty cycles.
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 16


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: how to construct it and what it takes."""

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    sparse: bool  # has k-WTA layers and/or sparse weights
    description: str


def _entries() -> dict[str, ZooEntry]:
    entries = [
        ZooEntry("gsc_sparse_cnn", GSCSparseCNN, GSC_INPUT_SHAPE, True,
                 "nupic.torch GSCSparseCNN: conv 64/64 (12/25, 320/1600 weights), global k-WTA k=4767/800, "
                 "linear 1000 (160/1600 weights), k=100"),
        ZooEntry("gsc_super_sparse_cnn", GSCSuperSparseCNN, GSC_INPUT_SHAPE, True,
                 "nupic.torch GSCSuperSparseCNN: GSCSparseCNN with linear 1500 units at 95% sparsity, k=150"),
        ZooEntry("gsc_dense_cnn2", DenseCNN2, GSC_INPUT_SHAPE, False,
                 "dense GSC baseline DenseCNN2 (64, 64, 1000), ReLU, 1.7M parameters"),
        ZooEntry("gsc_dense_small1", DenseSmall1, GSC_INPUT_SHAPE, False,
                 "dense GSC baseline DenseSmall1 (32, 32, 300), ReLU"),
        ZooEntry("gsc_dense_small2", DenseSmall2, GSC_INPUT_SHAPE, False,
                 "dense GSC baseline DenseSmall2 (32, 64, 300), ReLU"),
        ZooEntry("gsc_fpga_sparse_cnn", GSCFPGASparseCNN, GSC_INPUT_SHAPE, True,
                 "larger/sparser GSC net: conv 64/256, linear 1500, 80-95% weight sparsity, 5% activations "
                 "(pool before k-WTA); 137x fewer sparse-sparse MACs than dense, 18.5x from weights alone"),
        ZooEntry("cifar_vgg19_dense", VGG19, CIFAR_INPUT_SHAPE, False,
                 "dense VGG-19 for CIFAR-10 (BatchNorm, ReLU), 20M parameters"),
        ZooEntry("cifar_vgg19_sparse", SparseVGG19, CIFAR_INPUT_SHAPE, True,
                 "sparse VGG-19 for CIFAR-10: global k-WTA 25% per layer, weight density 1.0 then 0.5"),
        ZooEntry("cifar_notsodensenet", NotSoDenseNet, CIFAR_INPUT_SHAPE, True,
                 "NotSoDenseNet: DenseNet-BC (growth 12, 3x4 layers), local/global k-WTA, 50% sparse convs"),
    ]
    return {entry.name: entry for entry in entries}


#: All zoo models by name.
ZOO: dict[str, ZooEntry] = _entries()


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(ZOO)}") from None


def _randomize_affine_batchnorm(model: nn.Module) -> None:
    """Give affine BatchNorm layers non-trivial scales and shifts (trained nets do not have 1 and 0)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)


def _calibrate(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Run seeded random batches in training mode to fill BatchNorm statistics and k-WTA duty cycles.

    BatchNorm layers use a cumulative average over the batches (``momentum=None``) so that their running
    statistics are those of the calibration data, not mostly their initial 0/1. Each batch has its own scale
    and offset so the statistics are not those of a unit normal either.
    """
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in batchnorms]
    for bn in batchnorms:
        bn.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for _ in range(CALIBRATION_BATCHES):
                scale = 0.5 + torch.rand(())
                offset = 0.5 * torch.randn(())
                model(torch.randn(CALIBRATION_BATCH_SIZE, *input_shape) * scale + offset)
    finally:
        for bn, momentum in zip(batchnorms, momenta, strict=True):
            bn.momentum = momentum
    model.eval()


def build(name: str, seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` deterministically (same seed → identical state dict), in eval mode.

    Seeded weights and masks; affine BatchNorm scales/shifts randomized; BatchNorm statistics and duty cycles
    populated by :data:`CALIBRATION_BATCHES` x :data:`CALIBRATION_BATCH_SIZE` seeded random inputs in training
    mode. The caller's global torch RNG state is left untouched. Unknown names raise ``ValueError``.
    """
    entry = _entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.factory()
        _randomize_affine_batchnorm(model)
        _calibrate(model, entry.input_shape)
    return model


def export(name: str, path: str | Path, seed: int = 0) -> Path:
    """Build zoo model ``name`` and export it to ONNX at ``path`` (opset 17, dynamic batch)."""
    entry = _entry(name)
    return export_module(build(name, seed), path, entry.input_shape, opset=17, dynamic_batch=True)


@dataclass(frozen=True)
class LayerMacs:
    """Multiply-accumulates of one Conv2d/Linear, per sample, averaged over the batch."""

    name: str
    dense: float  # every (input, weight) tap that exists, zeros included (padding excluded)
    weight_sparse: float  # taps with a non-zero weight
    sparse_sparse: float  # taps with a non-zero weight AND a non-zero input


@dataclass(frozen=True)
class MacCounts:
    """Per-sample MAC counts of a model on a given batch (see :func:`count_macs`)."""

    layers: tuple[LayerMacs, ...] = field(default_factory=tuple)

    @property
    def dense(self) -> float:
        """Total dense MACs."""
        return sum(layer.dense for layer in self.layers)

    @property
    def weight_sparse(self) -> float:
        """Total MACs skipping zero weights."""
        return sum(layer.weight_sparse for layer in self.layers)

    @property
    def sparse_sparse(self) -> float:
        """Total MACs skipping zero weights and zero inputs."""
        return sum(layer.sparse_sparse for layer in self.layers)


def count_macs(model: nn.Module, x: torch.Tensor) -> MacCounts:
    """Count exactly the dense / weight-sparse / sparse-sparse MACs of each Conv2d and Linear on batch ``x``.

    Counts come from the real activations (hooks on each layer's input), computed in float64: the
    sparse-sparse count of a layer is the number of (non-zero input, non-zero weight) pairs that meet in an
    output. The model runs in its current mode.
    """
    records: list[LayerMacs] = []

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            (x_in,) = inputs
            batch = x_in.shape[0]
            active = (x_in != 0).double()
            every = torch.ones_like(active)
            nonzero_w = (module.weight != 0).double()
            all_w = torch.ones_like(nonzero_w)
            if isinstance(module, nn.Conv2d):
                def run(inp: torch.Tensor, w: torch.Tensor, conv: nn.Conv2d = module) -> float:
                    return float(F.conv2d(inp, w, None, conv.stride, conv.padding, conv.dilation,
                                          conv.groups).sum())
            else:
                def run(inp: torch.Tensor, w: torch.Tensor) -> float:
                    return float((inp @ w.T).sum())
            records.append(LayerMacs(
                name,
                dense=run(every, all_w) / batch,
                weight_sparse=run(every, nonzero_w) / batch,
                sparse_sparse=run(active, nonzero_w) / batch,
            ))
        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return MacCounts(tuple(records))
