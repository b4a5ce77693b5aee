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
    always); the activation-sparse conv pays only below ~3 % active inputs; a linear layer scatters its active
    inputs (CSC) below 20 % activity, else uses the packed weight-sparse kernel.
``llvm-avx2``
    Measured on AMD Zen 3 (AVX2+FMA, 16 ymm registers), one core, with ``sparsecc calibrate`` (thread CPU time;
    log in ``benchmarks/results/profiles/``): the tap-list conv wins up to density 1/3 (250 vs 311 us on a
    64->64 5x5 layer; 390 vs 342 us at 0.5), the activation-sparse conv up to 10 % active inputs, the scatter
    linear up to 70 % (76 vs 104 us; 122 vs 115 us at 80 %).
``llvm-sse2`` / ``llvm-neon``
    128-bit vectors: the AVX2 rules (not measured on such hardware; run ``sparsecc calibrate`` there).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import PassError


@dataclasses.dataclass(frozen=True)
class KernelProfile:
    """Crossovers for one machine class.

    Attributes:
        name: the profile's name (recorded in pass options and manifests).
        dense_above: weight density above which a dense kernel beats indexing the non-zeros.
        act_sparse_below: (MAC-count targets) input activity at or below which activation sparsity is used.
        conv_weight_sparse_max: (llvm) weight density at or below which the conv tap-list kernel wins.
        conv_short_reduction: (llvm) C*KH*KW at or below which the tap-list kernel wins even when dense.
        conv_act_sparse_max: (llvm) input activity at or below which the activation-sparse conv wins.
        linear_scatter_max: (llvm) input activity at or below which a sparse linear scatters its active inputs.
        measured_on: where the numbers come from (a CPU name and date, or "model").
    """

    name: str
    dense_above: float = 0.5
    act_sparse_below: float = 0.6
    conv_weight_sparse_max: float = 0.5
    conv_short_reduction: int = 64
    conv_act_sparse_max: float = 0.03
    linear_scatter_max: float = 0.2
    measured_on: str = "model"

    def __post_init__(self) -> None:
        for field in ("dense_above", "act_sparse_below", "conv_weight_sparse_max", "conv_act_sparse_max",
                      "linear_scatter_max"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise PassError(f"kernel profile '{self.name}': {field} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.conv_short_reduction, int) or self.conv_short_reduction < 0:
            raise PassError(f"kernel profile '{self.name}': conv_short_reduction must be an int >= 0")

    def to_json(self) -> dict[str, Any]:
        return {"format": "sparsecc-kernel-profile", "version": 1, **dataclasses.asdict(self)}

    @staticmethod
    def from_json(data: Any, source: str = "profile") -> KernelProfile:
        if not isinstance(data, dict) or data.get("format") != "sparsecc-kernel-profile":
            raise PassError(f"{source} is not a sparsecc kernel profile (written by 'sparsecc calibrate')")
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
        KernelProfile("llvm-avx512", conv_weight_sparse_max=1 / 3, conv_act_sparse_max=0.03, linear_scatter_max=0.2,
                      measured_on="AMD EPYC Zen 5 (znver5), 1 thread"),
        KernelProfile("llvm-avx2", conv_weight_sparse_max=1 / 3, conv_act_sparse_max=0.1, linear_scatter_max=0.7,
                      measured_on="AMD EPYC (znver3, AVX2), 1 thread, sparsecc calibrate 2026-12-01 "
                                  "(benchmarks/results/profiles/znver3-avx2.*)"),
        KernelProfile("llvm-sse2", conv_weight_sparse_max=1 / 3, conv_act_sparse_max=0.1, linear_scatter_max=0.7),
        KernelProfile("llvm-neon", conv_weight_sparse_max=1 / 3, conv_act_sparse_max=0.1, linear_scatter_max=0.7),
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
