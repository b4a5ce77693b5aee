"""Neural-network ops on NCHW tensors (``nn.*``)."""

from __future__ import annotations

from ...errors import VerificationError
from ..attributes import check
from ..core import Operation, Value, attr_def, operand_def, opt_operand_def, register_op
from ..shapes import normalize_axis, window_output_dim
from ..types import KWTABound, TensorType, group_size

_FLOAT = ("f32", "f64", "f16")


def _check_float(op: Operation, name: str, value: Value) -> TensorType:
    check(value.type.dtype in _FLOAT, f"{op.name}: operand '{name}' must be floating point, got {value.type.dtype}")
    return value.type


def _check_per_channel(op: Operation, name: str, value: Value | None, channels: int | None) -> None:
    if value is None:
        return
    check(value.type.rank == 1, f"{op.name}: '{name}' must be a vector, got rank {value.type.rank}")
    check(
        channels is None or value.type.shape[0] in (None, channels),
        f"{op.name}: '{name}' has {value.type.shape[0]} entries for {channels} channels",
    )


class ConvWindow(Operation):
    """The window attributes shared by the conv2d ops (not an op itself)."""

    strides = attr_def("ints2", (1, 1))
    pads = attr_def("ints4", (0, 0, 0, 0))  # top, left, bottom, right
    dilations = attr_def("ints2", (1, 1))
    groups = attr_def(int, 1)


class WeightedLayer(Operation):
    """The operands shared by the conv2d and linear ops (not an op itself)."""

    input = operand_def()
    weight = operand_def()
    bias = opt_operand_def()


class ConvLike(ConvWindow, WeightedLayer):
    """A conv2d-like op (``nn.conv2d``, ``sparse.conv2d``); not an op itself."""


def conv2d_output_shape(op: ConvLike) -> tuple[int | None, ...]:
    """Output shape of a conv2d-like op."""
    x = _check_float(op, "input", op.input)
    w = _check_float(op, "weight", op.weight)
    check(x.rank == 4, f"{op.name}: input must be NCHW (rank 4), got rank {x.rank}")
    check(w.rank == 4, f"{op.name}: weight must be OIHW (rank 4), got rank {w.rank}")
    strides, pads, dilations, groups = op.strides, op.pads, op.dilations, op.groups
    check(min(strides) >= 1, f"{op.name}: strides must be two positive ints, got {strides}")
    check(min(pads) >= 0, f"{op.name}: pads must be four non-negative ints, got {pads}")
    check(min(dilations) >= 1, f"{op.name}: bad dilations {dilations}")
    check(groups >= 1, f"{op.name}: groups must be >= 1")
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    check(c is None or i is None or c == i * groups, f"{op.name}: input has {c} channels, weight expects {i}x{groups}")
    check(o is None or o % groups == 0, f"{op.name}: {o} output channels do not split into {groups} groups")
    _check_per_channel(op, "bias", op.bias, o)
    if kh is None or kw is None:
        raise VerificationError(f"{op.name}: the kernel size must be static, got {w.shape}")
    oh = window_output_dim(h, kh, strides[0], pads[0], pads[2], dilations[0])
    ow = window_output_dim(wd, kw, strides[1], pads[1], pads[3], dilations[1])
    return (n, o, oh, ow)


@register_op
class Conv2D(ConvLike):
    """2-D convolution (cross-correlation), NCHW input, OIHW weight, optional per-output-channel bias.

    ``pads`` are (top, left, bottom, right) zeros. Output: (N, O, OH, OW) in the input's float type.
    """

    name = "nn.conv2d"

    def infer_types(self) -> list[TensorType]:
        return [TensorType(conv2d_output_shape(self), self.input.type.dtype)]


def linear_output_shape(op: WeightedLayer) -> tuple[int | None, ...]:
    """Output shape of a linear-like op (``nn.linear``, ``sparse.linear``)."""
    x = _check_float(op, "input", op.input)
    w = _check_float(op, "weight", op.weight)
    check(x.rank == 2, f"{op.name}: input must be (batch, features), got rank {x.rank}")
    check(w.rank == 2, f"{op.name}: weight must be (out, in), got rank {w.rank}")
    check(x.shape[1] is None or x.shape[1] == w.shape[1], f"{op.name}: {x.shape[1]} inputs, weight takes {w.shape[1]}")
    _check_per_channel(op, "bias", op.bias, w.shape[0])
    return (x.shape[0], w.shape[0])


@register_op
class Linear(WeightedLayer):
    """Fully connected layer ``y = x @ weight.T + bias``; x is (B, in), weight (out, in): one row per unit."""

    name = "nn.linear"

    def infer_types(self) -> list[TensorType]:
        return [TensorType(linear_output_shape(self), self.input.type.dtype)]


@register_op
class BatchNorm(Operation):
    """Inference batch normalisation over axis 1: ``(x - mean) / sqrt(var + epsilon) * scale + bias``."""

    name = "nn.batch_norm"
    input = operand_def()
    scale = operand_def()
    bias = operand_def()
    mean = operand_def()
    var = operand_def()
    epsilon = attr_def(float, 1e-5)

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        check(x.rank >= 2, f"{self.name}: input needs a channel axis (rank >= 2)")
        for name, value in (("scale", self.scale), ("bias", self.bias), ("mean", self.mean), ("var", self.var)):
            _check_per_channel(self, name, value, x.shape[1])
        return [x.with_encoding(None)]


@register_op
class ChannelAffine(Operation):
    """Per-channel affine map over axis 1: ``x * scale[c] + shift[c]`` (a folded batch norm)."""

    name = "nn.channel_affine"
    input = operand_def()
    scale = operand_def()
    shift = operand_def()

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        check(x.rank >= 2, f"{self.name}: input needs a channel axis (rank >= 2)")
        _check_per_channel(self, "scale", self.scale, x.shape[1])
        _check_per_channel(self, "shift", self.shift, x.shape[1])
        return [x.with_encoding(None)]


class Pool2D(Operation):
    """The operand and window attributes shared by the pooling ops (not an op itself)."""

    input = operand_def()
    kernel = attr_def("ints2")
    strides = attr_def("ints2", (1, 1))
    pads = attr_def("ints4", (0, 0, 0, 0))  # top, left, bottom, right
    ceil_mode = attr_def(bool, False)


def pool_output_shape(op: Pool2D, x: TensorType) -> tuple[int | None, ...]:
    check(x.rank == 4, f"{op.name}: input must be NCHW (rank 4), got rank {x.rank}")
    kernel, strides, pads = op.kernel, op.strides, op.pads
    check(min(kernel) >= 1, f"{op.name}: kernel must be two positive ints")
    check(min(strides) >= 1, f"{op.name}: strides must be two positive ints")
    check(min(pads) >= 0, f"{op.name}: pads must be four non-negative ints")
    check(pads[0] < kernel[0] and pads[1] < kernel[1] and pads[2] < kernel[0] and pads[3] < kernel[1],
          f"{op.name}: padding {list(pads)} must be smaller than the kernel {list(kernel)}")
    n, c, h, w = x.shape
    ceil = op.ceil_mode
    return (n, c, window_output_dim(h, kernel[0], strides[0], pads[0], pads[2], 1, ceil),
            window_output_dim(w, kernel[1], strides[1], pads[1], pads[3], 1, ceil))


def pooled_bound(bound: KWTABound | None, out_shape: tuple[int | None, ...], kernel: tuple[int, ...],
                 strides: tuple[int, ...], pads: tuple[int, ...]) -> KWTABound | None:
    """The k-WTA bound left after max-pooling a tensor that carried ``bound``.

    With disjoint windows (stride >= kernel) and no padding, each non-zero output needs its own non-zero
    input, so a bound over all non-batch axes still holds (if it still says anything). Otherwise: none.
    """
    if bound is None or bound.over != tuple(range(1, len(out_shape))):
        return None
    if any(pads) or strides[0] < kernel[0] or strides[1] < kernel[1]:
        return None
    size = group_size(out_shape, bound.over)
    return None if size is not None and bound.k > size else bound


@register_op
class MaxPool2D(Pool2D):
    """Max pooling over H, W; padded positions never win. Keeps a global k-WTA bound (disjoint windows)."""

    name = "nn.maxpool2d"

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        shape = pool_output_shape(self, x)
        bound = x.encoding if isinstance(x.encoding, KWTABound) else None
        bound = pooled_bound(bound, shape, self.kernel, self.strides, self.pads)
        return [TensorType(shape, x.dtype, bound)]


@register_op
class AvgPool2D(Pool2D):
    """Average pooling over H, W; ``count_include_pad`` says whether padded zeros count in the mean."""

    name = "nn.avgpool2d"
    count_include_pad = attr_def(bool, False)

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        return [TensorType(pool_output_shape(self, x), x.dtype)]


@register_op
class GlobalAvgPool2D(Operation):
    """Mean over H and W, keeping them as size-1 axes: (N, C, H, W) -> (N, C, 1, 1)."""

    name = "nn.global_avgpool2d"
    input = operand_def()

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        check(x.rank == 4, f"{self.name}: input must be NCHW (rank 4), got rank {x.rank}")
        return [TensorType((x.shape[0], x.shape[1], 1, 1), x.dtype)]


@register_op
class Relu(Operation):
    """``max(x, 0)``; keeps a k-WTA bound (it only removes non-zeros)."""

    name = "nn.relu"
    input = operand_def()

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        keep = x.encoding if isinstance(x.encoding, KWTABound) else None
        return [x.with_encoding(keep)]


class _SoftmaxBase(Operation):
    input = operand_def()
    axis = attr_def(int, -1)

    def infer_types(self) -> list[TensorType]:
        x = _check_float(self, "input", self.input)
        normalize_axis(self.axis, x.rank)
        return [x.with_encoding(None)]


@register_op
class Softmax(_SoftmaxBase):
    """Softmax along ``axis`` (ONNX opset >= 13 semantics)."""

    name = "nn.softmax"


@register_op
class LogSoftmax(_SoftmaxBase):
    """Log-softmax along ``axis`` (ONNX opset >= 13 semantics)."""

    name = "nn.log_softmax"


@register_op
class Dropout(Operation):
    """Dropout at inference: the identity. ``canonicalize`` removes it."""

    name = "nn.dropout"
    input = operand_def()

    def infer_types(self) -> list[TensorType]:
        return [self.input.type]
