"""The HLS target's layer emitters, one module per kernel family (the Python side of the C++ headers in
``runtime/hls/include``): each turns one op into a :class:`~sparsecc.targets.hls.design.Layer` (the call, its
config struct, its constant arrays, its loop model). :class:`~sparsecc.targets.hls.lowering.Lowering` combines them.
"""

from .common import LayerCommon
from .conv import ConvLowering
from .epilogue import EpilogueLowering
from .kwta import KwtaLowering
from .linear import LinearLowering
from .pointwise import PointwiseLowering
from .weights import WeightLowering

__all__ = ["ConvLowering", "EpilogueLowering", "KwtaLowering", "LayerCommon", "LinearLowering", "PointwiseLowering",
           "WeightLowering"]
