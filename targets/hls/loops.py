"""The pipelined loops of one generated layer, as a function of its lanes: iterations and entries per stage.

Every kernel of the header library is a handful of pipelined loops (II = 1 unless stated). For a layer the
lowering records a :class:`LoopModel`: what its MAC loop is (``kind``), its sizes, and what its epilogue runs.
:meth:`LoopModel.iterations` gives, for ``lanes`` L (the ``lanes`` member of the layer's config, the UNROLL
factor of its MAC and k-WTA loops), the cycles each stage's loops issue (sum of II over iterations) and how
many times they are entered (each entry pays the pipeline depth). The estimate (:mod:`.estimate`) turns these
into cycles; the instrumented C-simulation counts the same two numbers on real inputs (``SPARSECC_COUNT`` /
``SPARSECC_ENTER`` in the headers), so the two can be compared loop by loop.

Data-dependent counts (active inputs of the sparse-input kernels) are expected values from the input's
activation density (the k-WTA bound), as the compiler knows it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Stages, in the order of the instrumentation counters (common.h: instrument::stage).
STAGES = ("mac", "scan", "pointwise", "kwta", "pool")

#: MAC loop kinds and the lanes they accept.
GATHER, SCATTER, COLUMN, PACKED, PACKED_SCATTER = "gather", "scatter", "column", "packed", "packed_scatter"


@dataclasses.dataclass
class KwtaLoops:
    groups: int
    size: int  # values per group
    key_bits: int
    local: bool
    radix_bits: int

    def lanes(self, lanes: int) -> int:
        """Lanes the k-WTA unit uses (global selection only; kwta_lanes in kwta.h)."""
        return 1 if self.local else lanes

    def iterations(self, lanes: int) -> tuple[int, int]:
        u = self.lanes(lanes)
        passes = math.ceil(self.key_bits / self.radix_bits)
        steps = math.ceil(self.size / u)
        return self.groups * (passes * (steps + 2**self.radix_bits) + steps), self.groups * (2 * passes + 1)


@dataclasses.dataclass
class LoopModel:
    """The loops of one layer (see module docstring)."""

    kind: str = ""  # MAC loop kind ('' for layers without one)
    reduce: int = 0  # gather: products per output (COLS or fan_in)
    outputs: int = 0  # accumulator elements (O * OH * OW, or O)
    rows: int = 0  # output units O
    inputs: int = 0  # input elements per sample
    taps: int = 0  # kernel taps of a conv (0 for linear layers)
    tap_hits: tuple[int, ...] = ()  # per tap: output pixels whose input under that tap is inside the image
    density: float = 1.0  # expected activation density of the input
    support: np.ndarray | None = None  # (O, COLS) bool: non-zero weights (scatter kinds)
    groups: int = 0  # complementary groups
    pack_size: int = 0
    in_channels: int = 1  # C of a conv's input
    scan: bool = False  # the kernel compacts its input (sparse-input kernels)
    ieee_scan: bool = False  # float IEEE design, weight-skipping kernel: one pass over x counting inf/NaN (ieee.h)
    replicate: bool = True  # a gather fills ceil(L / 2) input replicas when L > 2 (not linear_dense: x is banked)
    pointwise: int = 0  # elements through pointwise loops
    pointwise_entries: int = 0
    kwta: KwtaLoops | None = None
    pool: int = 0  # cycles of the pooling loops (their II included)
    pool_entries: int = 0

    # -- lanes ------------------------------------------------------------------------------------------------
    def allowed_lanes(self, limit: int) -> list[int]:
        """The lanes this layer accepts, up to ``limit``: divisors of O for the scatter kinds, one for the
        complementary kinds, 1..reduce for gathers, 1..group size for a global k-WTA; [1] otherwise."""
        if self.kind in (PACKED, PACKED_SCATTER):
            return [1]
        if self.kind in (SCATTER, COLUMN):
            return [d for d in range(1, min(self.rows, limit) + 1) if self.rows % d == 0]
        widest = self.reduce if self.kind == GATHER else 1
        if self.kwta is not None and not self.kwta.local:
            widest = max(widest, self.kwta.size)
        return list(range(1, min(widest, limit) + 1))

    def slots(self, lanes: int) -> np.ndarray:
        """Banked CSC: slots of each column (the most non-zeros any of the L row banks holds)."""
        assert self.support is not None
        rows, cols = self.support.shape
        return self.support.reshape(lanes, rows // lanes, cols).sum(axis=1).max(axis=0)

    def stored_entries(self, lanes: int) -> int:
        """Entries of a banked CSC weight (slots x lanes) for ``lanes`` (scatter kind)."""
        return int(self.slots(lanes).sum()) * lanes

    def _expected_extra_slots(self, lanes: int) -> float:
        """Expected iterations beyond one per (active input, tap): sum over the taps that reach an output of
        max(0, the column's slots - 1), times the input density."""
        assert self.support is not None
        per_column = self.slots(lanes) if self.kind == SCATTER else np.full(self.support.shape[1], self.rows // lanes)
        extra = np.maximum(per_column.astype(np.float64) - 1, 0)
        if self.taps:
            hits = np.tile(np.asarray(self.tap_hits, dtype=np.float64), extra.size // self.taps)
            return self.density * float(np.dot(extra, hits))
        return self.density * float(extra.sum())

    # -- counts -----------------------------------------------------------------------------------------------
    def iterations(self, lanes: int) -> dict[str, tuple[float, float]]:
        """Per stage: (cycles issued = sum of II over iterations, loop entries) for ``lanes``."""
        out: dict[str, tuple[float, float]] = {}
        active = self.density * self.inputs
        if self.kind == GATHER:
            out["mac"] = (math.ceil(self.reduce / lanes) * self.outputs, 1)
            if lanes > 2 and self.replicate:
                out["scan"] = (self.inputs, 1)  # filling the input replicas
        elif self.kind in (SCATTER, COLUMN):
            # bias pass; then max(1, slots) per (active input, tap) and the final read of the end marker
            per_input = self.taps or 1
            out["mac"] = (self.outputs + 1 + active * per_input + self._expected_extra_slots(lanes), 2)
        elif self.kind == PACKED:
            pixels = self.outputs // self.rows
            out["mac"] = (self.groups * pixels * (self.reduce + self.pack_size), 2 * self.groups * pixels)
        elif self.kind == PACKED_SCATTER:
            hits = self.density * self.in_channels * sum(self.tap_hits) if self.taps else active
            out["mac"] = (self.outputs + hits * self.groups, 1 + hits)
        if self.scan:
            previous = out.get("scan", (0, 0))
            out["scan"] = (previous[0] + self.inputs, previous[1] + 1)
        if self.ieee_scan:
            previous = out.get("scan", (0, 0))
            out["scan"] = (previous[0] + self.inputs, previous[1] + 1)
        if self.pointwise:
            out["pointwise"] = (self.pointwise, self.pointwise_entries)
        if self.kwta is not None:
            out["kwta"] = self.kwta.iterations(lanes)
        if self.pool:
            out["pool"] = (self.pool, self.pool_entries)
        return out
