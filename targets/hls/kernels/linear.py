"""``nn.linear`` / ``sparse.linear`` as an HLS layer call (``sparsecc::linear_*<cfg>``).
"""

from __future__ import annotations

import numpy as np

from sparsecc.compiler.cost_model import activation_density
from sparsecc.compiler.errors import CompileError
from sparsecc.compiler.ir import ops

from ..design import Layer
from ..loops import COLUMN, GATHER, PACKED_SCATTER, SCATTER, LoopModel
from .common import constant_operand, mac_kind


class LinearLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _linear(self, op: ops.WeightedLayer) -> None:
        x = op.input
        source = self._buffer(x, op)
        if len(source.shape) != 1:
            raise CompileError(f"{op.name} %{op.results[0].name}: input must be (batch, features)", op_type=op.name)
        weight = constant_operand(op.weight, "weight", op)
        o, i = weight.shape
        matrix = np.ascontiguousarray(weight.astype(np.float32))
        encoding = op.weight.type.encoding
        (kernel, storage, packed, packing_note, function, index, lanes, ident, data, constants, accum, output,
         config) = self._weighted_layer_start(op, matrix, "linear")
        config.constant(["in_features", "out_features"], [i, o])
        arrays, weight_args, members, description, stored = self._weight_arrays(
            ident, matrix, storage, constants, encoding.mnemonic if encoding else "dense", op.results[0].name or "",
            lanes, packed)
        if packing_note:
            description += f"; {packing_note}"
        for member, value in members.items():
            config.constant(member, value)
        config.typedef(accum.ctype(), "accum_t")
        notes, kwta, _, _, relu = self._epilogue(op, config, o, (1, 1), data, constants, index, lanes)
        bias, boost = self._bias_boost(op, ident, o, constants, arrays)
        args = [*weight_args, bias, *self._epilogue_args(config, o, boost)]
        nnz = int(np.count_nonzero(matrix))
        in_density = activation_density(x)
        summary = (f"{op.name} {i} -> {o}: {kernel.replace('_', '-')} kernel, weights {description} ({nnz} "
                   f"non-zeros, density {nnz / matrix.size:.3g})"
                   + (f"; input density <= {in_density:.3g}" if in_density < 1 else "")
                   + (f"; epilogue {' -> '.join(notes)}" if notes else "")
                   + f"; {lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::{function}<{config.name}>", args, [source], output, data, config, arrays,
                      kernel if storage != "complementary" else f"{kernel}+complementary", description, nnz, stored)
        layer.lanes = lanes
        kind = mac_kind(function)
        layer.loops = LoopModel(kind=kind, reduce=members.get("fan_in", i), outputs=o, rows=o, inputs=i,
                                density=in_density if kind != GATHER else 1.0,
                                support=matrix != 0 if kind == SCATTER else None,
                                groups=members.get("n_groups", 0), pack_size=members.get("pack_size", 0),
                                scan=kind in (SCATTER, COLUMN, PACKED_SCATTER),
                                replicate=function != "linear_dense")
        self._ieee_stage(layer, function, o, 1)
        if kind == COLUMN:
            layer.loops.support = np.ones((o, i), dtype=bool)
        self._epilogue_loops(layer, (o, 1, 1), kwta, None, False, relu)
        dense_macs = o * i
        macs = {"dense": dense_macs * (in_density if kernel == "act_sparse" else 1.0),
                "ell": o * members.get("fan_in", 0),
                "csc": dense_macs * (nnz / matrix.size) * in_density,
                "complementary": members.get("n_groups", 0) * i * (in_density if kernel == "sparse_sparse" else 1.0),
                }[storage]
        self._fill_work(layer, macs, kind, source, o, accum)
        self._add(layer)
