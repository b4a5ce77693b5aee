"""``sparse.kwta`` as an HLS layer call (``sparsecc::kwta<cfg>``).
"""

from __future__ import annotations

from sparsecc.compiler.ir import ops
from sparsecc.compiler.ir.layer import Kwta

from ..cpp import ConfigStruct
from ..design import Layer, Work, element_bits
from ..loops import KwtaLoops, LoopModel
from .common import constant_operand, per_channel
from .epilogue import key_bits


class KwtaLowering:
    """Methods of :class:`~sparsecc.targets.hls.lowering.Lowering` (see the module docstring)."""

    def _kwta(self, op: ops.KWinners) -> None:
        source = self._buffer(op.input, op)
        c, h, w = self._chw(source)
        mode = self._kwta_mode(op, Kwta.of_op(op))
        index = self._next_index()
        lanes = 1 if mode.local else self.lanes.get(op.results[0].name or "", 1)
        ident, data, constants, _, output = self._layer(op, suffixes=("config", "boost"))
        config = ConfigStruct(f"{ident}_config", "sparsecc::kwta_defaults")
        config.constant("layer", index)
        self.options.mark_fast_math(config)
        config.constant("lanes", lanes, note="values counted / selected per cycle (global k-WTA)")
        config.constant(["channels", "height", "width"], [c, h, w])
        config.constant("k", op.k)
        if mode.local:
            config.constant("local", True, "bool")
        if mode.break_ties:
            config.constant("break_ties", True, "bool")
        boost = per_channel(constant_operand(op.boost, "boost", op), c, "the k-WTA boost", op)
        arrays = []
        if boost is not None:
            config.constant("boost", True, "bool", "select on x * boost[c]")
            arrays.append(self._boost_array(f"{ident}_boost", boost, constants, op))
            config.typedef(arrays[0].ctype, "boost_t")
            args = [f"{ident}_boost"]
        else:
            args = [f"sparsecc::no_values<{ident}_config::boost_t, {c}>::values"]
        config.constant("radix_bits", self.options.radix_bits)
        size = c * h * w
        groups = h * w if mode.local else 1
        summary = (f"{op.name} {source.shape_text()}: k-WTA k={op.k} of {size // groups} "
                   f"({'local: over C at each pixel' if mode.local else 'global'}"
                   f"{', ties broken' if mode.break_ties else ''}{', boosted' if boost is not None else ''}); "
                   f"{lanes} lane{'s' if lanes > 1 else ''}")
        config.comment = summary
        layer = Layer(0, op.results[0].name or "", ident, op.name, summary,
                      f"sparsecc::kwta<{config.name}>", args, [source], output, data, config, arrays)
        layer.lanes = lanes
        layer.loops = LoopModel(kwta=KwtaLoops(groups, size // groups, key_bits(data, arrays[0] if arrays else None),
                                               mode.local, self.options.radix_bits))
        layer.work = Work(weight_bits=sum(a.count * element_bits(a, constants) for a in arrays))
        layer.banked_arrays = ()
        self._add(layer)
