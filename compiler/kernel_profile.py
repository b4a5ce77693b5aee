"""Kernel profiles: the measured crossovers that decide which kernel family a layer gets on a target.

A profile is data: thresholds on weight density and input activity (the k-WTA bound) measured on one class of
machine with ``benchmarks/kernels`` or on the user's own host with ``sparsecc calibrate``. ``compress-weights`` and
``schedule-sparse`` read the profile named in their ``profile`` option (a built-in name below, or a JSON file
written by ``sparsecc calibrate``); the targets' lowerings follow the kernel the pass wrote, so the IR says
what runs.

Built-in profiles:

``generic`` / ``cuda`` / ``hls``
    Kernels follow the MAC count: weight sparsity pays at density <= 0.5, activation sparsity at a k-WTA bound
    <= 0.6.
``llvm-avx512``
    Measured on AMD Zen 5 (AVX-512), one core: the conv tap-list (weight-sparse) kernel runs ~37 GMAC/s on
    non-zeros against ~110 for the dense conv, so it pays below density ~1/3 (short reductions, C*KH*KW <= 64,
    always); the activation-sparse conv pays only below ~3 % active inputs on 20 %-dense weights (input activity
    <= 0.15 x weight density); a linear layer scatters its active inputs (CSC) below 20 % activity, else uses the
    packed weight-sparse kernel.
``llvm-avx2``
    Measured on AMD Zen 3 (AVX2+FMA, 16 ymm registers), one core, with ``sparsecc calibrate`` (thread CPU time;
    log in ``benchmarks/results/profiles/``): the tap-list conv wins clearly up to density 1/3 (146 vs 232 us on a
    64->64 5x5 layer; 280 vs 296 us at 0.5), the activation-sparse conv up to input activity ~0.25 x weight
    density (the calibration's 0.375 on 20 %-dense weights, less on sparser weights, below), the scatter linear
    up to 60-70 % (86 vs 116 us at 60 %, 121 vs 117 us at 70 %; 76 vs 104 and 122 vs 115 us at 70/80 % before).

The activation-sparse conv reads dense weight columns for each active input, the tap-list conv every non-zero
weight for each output vector: their costs are ~ activity x (H x W) x O and ~ density x O x (Ho x Wo), so the
crossover is a ratio of input activity to weight density (``conv_act_sparse_ratio``), not an activity alone.
Measured on Zen 3 (one thread, 64-channel 14 x 14 input, 5 x 5 filters): with 20 %-dense weights the
activation-sparse conv wins at 5 % activity (313 vs 376 us for 256 filters) and loses at 10 % (689 vs 537 us);
with 5 %-dense weights (the FPGA-style net's conv2) it wins at 1 % (130 vs 165 us) and loses from 2 % on (345 vs
170 us at its 5 %) — the fixed activity threshold of 10 % the profile held before chose it there, 1.6x slower
for the whole net.
``llvm-sse2`` / ``llvm-neon``
    128-bit vectors: the AVX2 rules (not measured on such hardware; run ``sparsecc calibrate`` there).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import PassError

#: version of the JSON profile format (1: ``conv_act_sparse_max``, an activity; 2: ``conv_act_sparse_ratio``)
FORMAT_VERSION = 2
#: weight density of the conv layer ``sparsecc calibrate`` races the two sparse convs on
CALIBRATION_DENSITY = 0.2
#: the largest activity / density ratio a profile may hold
RATIO_MAX = 100.0


@dataclasses.dataclass(frozen=True)
class KernelProfile:
    """Crossovers for one machine class.

    Attributes:
        name: the profile's name (recorded in pass options and manifests).
        dense_above: weight density above which a dense kernel beats indexing the non-zeros.
        act_sparse_below: (MAC-count targets) input activity at or below which activation sparsity is used.
        conv_weight_sparse_max: (llvm) weight density at or below which the conv tap-list kernel wins.
        conv_short_reduction: (llvm) C*KH*KW at or below which the tap-list kernel wins even when dense.
        conv_act_sparse_ratio: (llvm) input activity / weight density at or below which the activation-sparse
            conv wins over the tap-list conv.
        linear_scatter_max: (llvm) input activity at or below which a sparse linear scatters its active inputs.
        measured_on: where the numbers come from (a CPU name and date, or "model").
    """

    name: str
    dense_above: float = 0.5
    act_sparse_below: float = 0.6
    conv_weight_sparse_max: float = 0.5
    conv_short_reduction: int = 64
    conv_act_sparse_ratio: float = 0.15
    linear_scatter_max: float = 0.2
    measured_on: str = "model"

    def __post_init__(self) -> None:
        for field, top in (("dense_above", 1), ("act_sparse_below", 1), ("conv_weight_sparse_max", 1),
                           ("conv_act_sparse_ratio", RATIO_MAX), ("linear_scatter_max", 1)):
            value = getattr(self, field)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= top:
                raise PassError(f"kernel profile '{self.name}': {field} must be a number in [0, {top}], "
                                f"got {value!r}")
        if not isinstance(self.conv_short_reduction, int) or self.conv_short_reduction < 0:
            raise PassError(f"kernel profile '{self.name}': conv_short_reduction must be an int >= 0")

    def to_json(self) -> dict[str, Any]:
        return {"format": "sparsecc-kernel-profile", "version": FORMAT_VERSION, **dataclasses.asdict(self)}

    def llvm_conv_kernel(self, *, density: float, activity: float, reduction: int, plain: bool) -> str:
        """The llvm kernel family of a conv layer: ``act_sparse``, ``weight_sparse`` or ``dense``.

        ``density``: the weight's non-zero fraction; ``activity``: the input's bound on non-zeros (1 if unknown);
        ``reduction``: C*KH*KW; ``plain``: stride 1, no dilation, one group (what the sparse kernels support)."""
        if plain and activity <= self.conv_act_sparse_ratio * density:
            return "act_sparse"
        if plain and (density <= self.conv_weight_sparse_max or reduction <= self.conv_short_reduction):
            return "weight_sparse"
        return "dense"

    @staticmethod
    def from_json(data: Any, source: str = "profile") -> KernelProfile:
        if not isinstance(data, dict) or data.get("format") != "sparsecc-kernel-profile":
            raise PassError(f"{source} is not a sparsecc kernel profile (written by 'sparsecc calibrate')")
        if data.get("version") == 1 and "conv_act_sparse_max" in data:
            # format 1 held the activity crossover measured on 20 %-dense weights (the calibration layer)
            data = {**data, "conv_act_sparse_ratio": data["conv_act_sparse_max"] / CALIBRATION_DENSITY}
            del data["conv_act_sparse_max"]
        fields = {f.name for f in dataclasses.fields(KernelProfile)}
        unknown = sorted(set(data) - fields - {"format", "version"})
        if unknown:
            raise PassError(f"{source}: unknown kernel profile field(s) {', '.join(unknown)}")
        try:
            return KernelProfile(**{k: v for k, v in data.items() if k in fields})
        except TypeError as exc:
            raise PassError(f"{source}: {exc}") from None


BUILTIN: dict[str, KernelProfile] = {
    p.name: p
    for p in (
        KernelProfile("generic"),
        KernelProfile("cuda"),
        KernelProfile("hls"),
        KernelProfile("llvm-avx512", conv_weight_sparse_max=1 / 3, conv_act_sparse_ratio=0.15, linear_scatter_max=0.2,
                      measured_on="AMD EPYC Zen 5 (znver5), 1 thread"),
        KernelProfile("llvm-avx2", conv_weight_sparse_max=1 / 3, conv_act_sparse_ratio=0.25, linear_scatter_max=0.7,
                      measured_on="AMD EPYC (znver3, AVX2), 1 thread, sparsecc calibrate 2026-12-01 "
                                  "(benchmarks/results/profiles/znver3-avx2.*)"),
        KernelProfile("llvm-sse2", conv_weight_sparse_max=1 / 3, conv_act_sparse_ratio=0.25, linear_scatter_max=0.7),
        KernelProfile("llvm-neon", conv_weight_sparse_max=1 / 3, conv_act_sparse_ratio=0.25, linear_scatter_max=0.7),
    )
}


def profile_for(target: str, isa: str | None = None) -> str:
    """The built-in profile name of a target (and, for llvm, its ISA class)."""
    if target == "llvm":
        return f"llvm-{isa or 'avx512'}"
    return target if target in BUILTIN else "generic"


def load_profile(name_or_path: str) -> KernelProfile:
    """A built-in profile by name, or a JSON profile file written by ``sparsecc calibrate``."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if path.suffix != ".json" or not path.is_file():
        raise PassError(f"unknown kernel profile '{name_or_path}': use one of {', '.join(BUILTIN)} or a .json file "
                        "written by 'sparsecc calibrate'")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PassError(f"cannot read kernel profile {path}: {exc}") from None
    return KernelProfile.from_json(data, str(path))
