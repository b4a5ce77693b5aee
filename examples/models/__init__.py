"""sparsecc.examples.models: the model zoo (nupic.torch-style layers, GSC and CIFAR networks)."""

from .cifar import VGG19, NotSoDenseNet, SparseVGG19, VGGNet
from .gsc import (
    DenseCNN2,
    DenseSmall1,
    DenseSmall2,
    GSCDenseCNN,
    GSCFPGASparseCNN,
    GSCSparseCNN,
    GSCSuperSparseCNN,
)
from .layers import (
    KWinners,
    KWinners2d,
    KWinnersBase,
    SparseWeights,
    SparseWeights2d,
    SparseWeightsBase,
    rezero_weights,
    update_boost_strength,
)
from .zoo import ZOO, LayerMacs, MacCounts, ZooEntry, build, count_macs, export

__all__ = [
    "VGG19",
    "ZOO",
    "DenseCNN2",
    "DenseSmall1",
    "DenseSmall2",
    "GSCDenseCNN",
    "GSCFPGASparseCNN",
    "GSCSparseCNN",
    "GSCSuperSparseCNN",
    "KWinners",
    "KWinners2d",
    "KWinnersBase",
    "LayerMacs",
    "MacCounts",
    "NotSoDenseNet",
    "SparseVGG19",
    "SparseWeights",
    "SparseWeights2d",
    "SparseWeightsBase",
    "VGGNet",
    "ZooEntry",
    "build",
    "count_macs",
    "export",
    "rezero_weights",
    "update_boost_strength",
]
