"""``nn.conv2d`` / ``sparse.conv2d`` as an HLS layer call (``sparsecc::conv2d_*<cfg>``).
"""

from __future__ import annotations

import numpy as np

from sparsecc.compiler.cost_model import activation_density
from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.layer import ConvGeometry
from sparsecc.runtime.hls import formats

from ..design import Layer
from ..loops import COLUMN, GATHER, PACKED_SCATTER, SCATTER, LoopModel
from .common import constant_operand, mac_kind


def conv_tap_hits(ky: int, kx: int, size: tuple[int, int], out: tuple[int, int], strides: tuple[int, ...],
              pads: tuple[int, ...]) -> int:
    """Output pixels whose input under tap (ky, kx) lies inside the image (not in the zero padding)."""
    rows = sum(0 <= oy * strides[0] + ky - pads[0] < size[0] for oy in range(out[0]))
    cols = sum(0 <= ox * strides[1] + kx - pads[1] < size[1] for ox in range(out[1]))
    return rows * cols


class ConvLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _conv2d(self, op: ops.ConvLike) -> None:
        x = op.input
        source = self._buffer(x, op)
        geometry = ConvGeometry.of_op(op)
        if geometry.groups != 1 or geometry.dilations != (1, 1):
            raise CompileError(f"{op.name} %{op.results[0].name}: grouped or dilated convolutions are not supported "
                               "by the HLS kernels", op_type=op.name)
        weight = constant_operand(op.weight, "weight", op)
        o, c, kh, kw = weight.shape
        _, h, w = source.shape
        pads, strides = geometry.pads, geometry.strides
        oh, ow = geometry.out_hw
        matrix = formats.weight_matrix(weight.astype(np.float32))
        encoding = op.weight.type.encoding
        (kernel, storage, packed, packing_note, function, index, lanes, ident, data, constants, accum, output,
         config) = self._weighted_layer_start(op, matrix, "conv2d")
        config.constant(["in_channels", "in_height", "in_width"], [c, h, w])
        config.constant(["out_channels", "out_height", "out_width"], [o, oh, ow])
        config.constant(["kernel_h", "kernel_w"], [kh, kw])
        if strides != (1, 1):
            config.constant(["stride_h", "stride_w"], list(strides))
        if any(pads):
            config.constant(["pad_top", "pad_left", "pad_bottom", "pad_right"], list(pads))
        what = f"{op.results[0].name}"
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", what, lanes, packed)
        if packing_note:
            description += f"; {packing_note}"
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, pool, pool_first, relu = self._epilogue(op, config, o, (oh, ow), data, constants, index, lanes)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias, *self._epilogue_args(config, o, boost)]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {source.shape_text()} -> {o}x{oh}x{ow}: {kh}x{kw} conv"
                   + (f" stride {strides[0]}x{strides[1]}" if strides != (1, 1) else "")
                   + (f" pad {list(pads)}" if any(pads) else "")
                   + f", {kernel.replace('_', '-')} kernel, weights {description} ({nnz} non-zeros, density "
                   f"{nnz / matrix.size:.3g})" + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)} -> {output.shape_text()}" if notes else "")
                   + f"; {lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
        layer.lanes = lanes
        kind = mac_kind(function)
        hits = tuple(conv_tap_hits(ky, kx, (h, w), (oh, ow), strides, pads) for ky in range(kh) for kx in range(kw))
        layer.loops = LoopModel(kind=kind, reduce=members.get("fan_in", c * kh * kw), outputs=o * oh * ow, rows=o,
                                inputs=source.size, taps=kh * kw, tap_hits=hits,
                                density=in_density if kind != GATHER else 1.0,
                                support=matrix != 0 if kind == SCATTER else None,
                                groups=members.get("n_groups", 0), pack_size=members.get("pack_size", 0),
                                in_channels=c, scan=kind in (SCATTER, COLUMN, PACKED_SCATTER))
        self._ieee_stage(layer, function, o, oh * ow)
        if kind == COLUMN:
            layer.loops.support = np.ones((o, c * kh * kw), dtype=bool)
        self._epilogue_loops(layer, (o, oh, ow), kwta, pool, pool_first, relu)
        dense_macs = o * oh * ow * c * kh * kw
        if storage == "dense" and kernel == "dense":
            macs: float = dense_macs
        elif storage == "ell":
            macs = o * oh * ow * members["fan_in"]
        elif storage == "complementary":
            macs = members["n_groups"] * oh * ow * c * kh * kw * (in_density if kernel == "sparse_sparse" else 1.0)
        elif storage == "dense":  # act_sparse
            macs = dense_macs * in_density
        else:  # csc scatter
            macs = dense_macs * (nnz / matrix.size) * in_density
        self._fill_work(layer, macs, kind, source, o * oh * ow, accum)
        self._add(layer)
