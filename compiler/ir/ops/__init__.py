"""The op set. Importing this package registers every op with the parser."""

from .const import Constant
from .elementwise import (
    Add,
    And,
    BinaryOp,
    Cast,
    CompareOp,
    Div,
    Equal,
    Exp,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    MatMul,
    Mul,
    Neg,
    Not,
    Or,
    Sqrt,
    Sub,
    UnaryOp,
    Where,
)
from .nn import (
    AvgPool2D,
    BatchNorm,
    ChannelAffine,
    Conv2D,
    Dropout,
    GlobalAvgPool2D,
    Linear,
    LogSoftmax,
    MaxPool2D,
    Relu,
    Softmax,
)
from .sparse import KERNELS, KWinners, KWTAStage, MaxPoolStage, ReluStage, SparseConv2D, SparseLinear
from .tensor import (
    Concat,
    Expand,
    FullLike,
    Gather,
    Identity,
    Reshape,
    ScatterElements,
    Slice,
    TopK,
    Transpose,
)

__all__ = [
    "KERNELS", "Add", "And", "AvgPool2D", "BatchNorm", "BinaryOp", "Cast", "ChannelAffine", "CompareOp",
    "Concat", "Constant", "Conv2D", "Div", "Dropout", "Equal", "Exp", "Expand", "FullLike", "Gather",
    "GlobalAvgPool2D", "Greater", "GreaterEqual", "Identity", "KWTAStage", "KWinners", "Less", "LessEqual",
    "Linear", "LogSoftmax", "MatMul", "MaxPool2D", "MaxPoolStage", "Mul", "Neg", "Not", "Or", "Relu",
    "ReluStage", "Reshape", "ScatterElements", "Slice", "Softmax", "SparseConv2D", "SparseLinear", "Sqrt",
    "Sub", "TopK", "Transpose", "UnaryOp", "Where",
]
