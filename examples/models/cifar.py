"""CIFAR-10 networks (DESIGN.md §3): input (B, 3, 32, 32), 10 classes.

* :class:`VGG19` — dense VGG-19 (blocks 2, 2, 4, 4, 4; channels 64, 128, 256, 512, 512; 3x3 pad 1; BatchNorm;
  ReLU; max-pool at the end of each block; Linear(512, 10)), laid out as nupic.research's ``VGGSparseNet``.
* :class:`SparseVGG19` — the same with KWinners2d (25% on, global) for every ReLU and 50% weight sparsity
  after the first block ("How Can We Be So Dense?").
* :class:`NotSoDenseNet` — a small DenseNet-BC with k-WTA activations and sparse convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import KWinners2d, SparseWeights2d

__all__ = ["VGG19", "NotSoDenseNet", "SparseVGG19", "VGGNet"]

CIFAR_INPUT_SHAPE = (3, 32, 32)
CIFAR_CLASSES = 10

VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_CHANNELS = (64, 128, 256, 512, 512)


class VGGNet(nn.Sequential):
    """VGG-style CIFAR net; each layer is Conv3x3(pad 1) → BatchNorm2d → [MaxPool2d(2) at block end] → act.

    ``percent_on[b] >= 1`` gives ReLU in block ``b``, otherwise a global KWinners2d with that density;
    ``weight_density[b] < 1`` wraps block ``b``'s convolutions in SparseWeights2d(sparsity = 1 - density).
    As in nupic.research's ``VGGSparseNet``, the pooling at the end of a block comes before the activation,
    so a block-final k-WTA selects over the pooled map. Module names: ``cnn_{block}_{layer}``,
    ``bn_{block}_{layer}``, ``maxpool_{block}_{layer}``, ``relu_…``/``kwinners_…``, ``flatten``, ``output``.
    """

    def __init__(
        self,
        block_sizes: Sequence[int] = VGG19_BLOCKS,
        channels: Sequence[int] = VGG19_CHANNELS,
        percent_on: Sequence[float] = (1.0,) * 5,
        weight_density: Sequence[float] = (1.0,) * 5,
        k_inference_factor: float = 1.0,
        boost_strength: float = 1.5,
        boost_strength_factor: float = 0.85,
        duty_cycle_period: int = 1000,
        num_classes: int = CIFAR_CLASSES,
    ) -> None:
        super().__init__()
        if not len(block_sizes) == len(channels) == len(percent_on) == len(weight_density):
            raise ValueError("block_sizes, channels, percent_on and weight_density must have the same length")
        in_channels = CIFAR_INPUT_SHAPE[0]
        for block, (size, out_channels) in enumerate(zip(block_sizes, channels, strict=True)):
            for layer in range(size):
                tag = f"{block}_{layer}"
                conv: nn.Module = nn.Conv2d(in_channels, out_channels, 3, padding=1)
                if weight_density[block] < 1.0:
                    conv = SparseWeights2d(conv, 1.0 - weight_density[block])
                self.add_module(f"cnn_{tag}", conv)
                self.add_module(f"bn_{tag}", nn.BatchNorm2d(out_channels))
                if layer == size - 1:
                    self.add_module(f"maxpool_{tag}", nn.MaxPool2d(2))
                if percent_on[block] >= 1.0:
                    self.add_module(f"relu_{tag}", nn.ReLU())
                else:
                    self.add_module(
                        f"kwinners_{tag}",
                        KWinners2d(
                            out_channels, percent_on[block], k_inference_factor=k_inference_factor,
                            boost_strength=boost_strength, boost_strength_factor=boost_strength_factor,
                            duty_cycle_period=duty_cycle_period,
                        ),
                    )
                in_channels = out_channels
        self.add_module("flatten", nn.Flatten())
        self.add_module("output", nn.Linear(in_channels, num_classes))


class VGG19(VGGNet):
    """Dense VGG-19 for CIFAR-10 (20.0M parameters)."""

    def __init__(self) -> None:
        super().__init__()


class SparseVGG19(VGGNet):
    """Sparse VGG-19 for CIFAR-10: KWinners2d (25% on, global, k_inference_factor 1) for every ReLU; weight
    density 1.0 in block 1 and 0.5 afterwards (e.g. 288 of 576 weights per filter in block 2)."""

    def __init__(self) -> None:
        super().__init__(percent_on=(0.25,) * 5, weight_density=(1.0, 0.5, 0.5, 0.5, 0.5))


class _KWTAFactory:
    """Builds the KWinners2d layers of a :class:`NotSoDenseNet` with shared hyper-parameters."""

    def __init__(self, percent_on: float, k_inference_factor: float, boost_strength: float,
                 boost_strength_factor: float, duty_cycle_period: int) -> None:
        self.percent_on = percent_on
        self.kwargs = dict(
            k_inference_factor=k_inference_factor, boost_strength=boost_strength,
            boost_strength_factor=boost_strength_factor, duty_cycle_period=duty_cycle_period,
        )

    def __call__(self, channels: int, local: bool) -> KWinners2d:
        return KWinners2d(channels, self.percent_on, local=local, **self.kwargs)


class _DenseLayer(nn.Module):
    """DenseNet-BC bottleneck layer: BN → k-WTA(local) → sparse Conv1x1 → BN → k-WTA(local) → sparse Conv3x3;
    the output is ``cat([x, new], dim=1)``."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: int, weight_sparsity: float,
                 kwta: _KWTAFactory) -> None:
        super().__init__()
        inner = bottleneck * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.kwinners1 = kwta(in_channels, local=True)
        self.conv1 = SparseWeights2d(nn.Conv2d(in_channels, inner, 1, bias=False), weight_sparsity)
        self.bn2 = nn.BatchNorm2d(inner)
        self.kwinners2 = kwta(inner, local=True)
        self.conv2 = SparseWeights2d(nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False), weight_sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Append ``growth_rate`` new feature maps to ``x``."""
        new = self.conv1(self.kwinners1(self.bn1(x)))
        new = self.conv2(self.kwinners2(self.bn2(new)))
        return torch.cat([x, new], dim=1)


class NotSoDenseNet(nn.Module):
    """A small DenseNet-BC for CIFAR-10 whose ReLUs are k-WTA and whose convolutions are sparse.

    Conv3x3(3, 2·growth) (dense) → for each dense block: ``layers`` bottleneck layers (:class:`_DenseLayer`,
    growth 12, bottleneck 4, local k-WTA over channels) and, between blocks, a transition BN → k-WTA(global)
    → sparse Conv1x1 (channels x reduction) → AvgPool2d(2) → final BN → k-WTA(global) → AvgPool2d(8) → Flatten
    → Linear(·, 10). Defaults: 3 blocks of 4 layers, channels 24 → 72 → 36 → 84 → 42 → 90, 25% of units on,
    50% weight sparsity on every convolution after the first. It has both k-WTA flavours (local and global).
    """

    def __init__(
        self,
        growth_rate: int = 12,
        block_config: Sequence[int] = (4, 4, 4),
        reduction: float = 0.5,
        bottleneck: int = 4,
        percent_on: float = 0.25,
        weight_sparsity: float = 0.5,
        k_inference_factor: float = 1.0,
        boost_strength: float = 1.5,
        boost_strength_factor: float = 0.85,
        duty_cycle_period: int = 1000,
        num_classes: int = CIFAR_CLASSES,
    ) -> None:
        super().__init__()
        kwta = _KWTAFactory(percent_on, k_inference_factor, boost_strength, boost_strength_factor,
                            duty_cycle_period)
        channels = 2 * growth_rate
        features = nn.Sequential()
        features.add_module("conv0", nn.Conv2d(CIFAR_INPUT_SHAPE[0], channels, 3, padding=1, bias=False))
        for block, layers in enumerate(block_config):
            for layer in range(layers):
                features.add_module(
                    f"block{block}_layer{layer}",
                    _DenseLayer(channels, growth_rate, bottleneck, weight_sparsity, kwta),
                )
                channels += growth_rate
            if block != len(block_config) - 1:
                out_channels = int(channels * reduction)
                transition = nn.Sequential()
                transition.add_module("bn", nn.BatchNorm2d(channels))
                transition.add_module("kwinners", kwta(channels, local=False))
                transition.add_module(
                    "conv", SparseWeights2d(nn.Conv2d(channels, out_channels, 1, bias=False), weight_sparsity)
                )
                transition.add_module("pool", nn.AvgPool2d(2))
                features.add_module(f"transition{block}", transition)
                channels = out_channels
        features.add_module("bn_final", nn.BatchNorm2d(channels))
        features.add_module("kwinners_final", kwta(channels, local=False))
        spatial = CIFAR_INPUT_SHAPE[1] // 2 ** (len(block_config) - 1)
        features.add_module("pool_final", nn.AvgPool2d(spatial))
        self.features = features
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) for a (B, 3, 32, 32) batch."""
        return self.classifier(self.flatten(self.features(x)))
