"""Every target's options, declared once: a dataclass per target whose fields carry type, default, help text and
choices. The CLI builds its ``--flags`` from them (``driver/cli.py``), the API checks option names against them,
and each target validates the values (``validate_options`` / :class:`~sparsecc.targets.hls.options.HLSOptions`).

This module is light on purpose (no TVM, no target package): the CLI imports it to build its parser.
A field with ``cli=False`` is an API option without a command-line flag (e.g. values the CLI sets itself, such as
``emit_source``, or options not exposed on the command line yet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ruff's RUF009 does not know that option() is a dataclasses.field: the declarations below carry "noqa: RUF009"


def option(default: Any = None, help: str = "", *, type: type = str, choices: tuple[str, ...] = (),
           cli: bool = True) -> Any:
    """A target option field: ``type`` is what a command-line string converts to; ``choices`` what it may be."""
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "choices": choices, "cli": cli})


@dataclass(frozen=True)
class OptionSpec:
    """One declared option, as the CLI and the error messages need it."""

    name: str
    help: str
    type: type
    choices: tuple[str, ...]
    cli: bool
    default: Any

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"


def option_specs(options: type) -> Iterator[OptionSpec]:
    """The declared options of a target's options dataclass, in declaration order."""
    for f in dataclasses.fields(options):
        meta = f.metadata
        yield OptionSpec(f.name, meta["help"], meta["type"], meta["choices"], meta["cli"], f.default)


@dataclass(frozen=True)
class LLVMTargetOptions:
    """Options of the llvm target (``sparsecc.compile(..., target="llvm", **options)``)."""

    mcpu: str | None = option(None, "CPU to compile for, as LLVM names it (haswell, znver3, skylake-avx512, "
                                    "neoverse-n1; default: this host)")
    mtriple: str | None = option(None, "target triple (default: this host's; aarch64-linux-gnu cross-compiles for "
                                       "64-bit Arm)")
    mattr: str | list[str] | None = option(None, "CPU feature overrides, e.g. '-avx512f' or '+avx2,+fma'")  # noqa: RUF009
    profile: str | None = option(None, "kernel profile: a built-in name (llvm-avx2, ...) or a .json written by "
                                       "'sparsecc calibrate'")
    fast_math: bool = option(False, "drop the IEEE guards: faster, but inputs holding inf/NaN may give finite results "
                                    "where onnxruntime gives NaN (see README, 'IEEE special values')", type=bool)
    emit_source: str | Path | None = option(None, "a directory for source/module.py and source/model.ll",  # noqa: RUF009
                                            cli=False)


@dataclass(frozen=True)
class CUDATargetOptions:
    """Options of the cuda target (``sparsecc.compile(..., target="cuda", **options)``)."""

    emit_source: str | Path | None = option(None, "a directory for source/kernels.cu and source/kernels.ptx",  # noqa: RUF009
                                            cli=False)
    archs: tuple[str, ...] = option(("sm_80", "sm_90"), "GPU architectures of the fat binary", cli=False)
    fast_math: bool = option(False, "drop the IEEE guards: faster, but inputs holding inf/NaN may give finite results "
                                    "where onnxruntime gives NaN (see README, 'IEEE special values')", type=bool)
    cuda_graph: bool = option(False, "replay the model as a CUDA graph (needs a fixed batch)", type=bool, cli=False)


@dataclass(frozen=True)
class HLSTargetOptions:
    """Options of the hls target as given (strings or typed values); ``HLSOptions.from_options`` validates them."""

    precision: str = option("float", "number type of the design: float or ap_fixed<W,I[,Q,O]> (default float)")
    layer_precision: str = option("", "per-layer number types: NAME:TYPE;NAME:TYPE")
    weight_precision: str | None = option(None, "number type of the stored weights")
    accum_precision: str | None = option(None, "number type of the accumulators")
    interface: str = option("array", "top-function interface: array or axis (AXI stream)", choices=("array", "axis"))
    part: str = option("xcu250-figd2104-2L-e", "FPGA part for build.tcl and the estimates (default "
                                               "xcu250-figd2104-2L-e)")
    clock_mhz: float = option(250.0, "target clock in MHz (default 250)", type=float)
    packing: str = option("none", "weight packing: none or complementary", choices=("none", "complementary"))
    pack_size: int = option(4, "filters overlaid per complementary pack", type=int)
    radix_bits: int = option(4, "digit width of the k-WTA radix select (1..8)", type=int, cli=False)
    lanes: int = option(1, "MAC / k-WTA lanes of every layer (default 1)", type=int)
    reuse_factor: int | None = option(None, "hls4ml reuse factor: lanes = ceil(loop length / R) per layer", type=int)
    target_fps: float | None = option(None, "fewest lanes per layer reaching this many samples/s", type=float)
    budget: str | None = option(None, "fastest lanes that fit a part: zcu104 or u250", choices=("zcu104", "u250"))
    layer_lanes: str = option("", "per-layer lanes: NAME:L;NAME:L")
    dense: bool = option(False, "generate the dense twin (every conv / linear dense)", type=bool, cli=False)
    fast_math: bool = option(False, "float designs: no IEEE stage (inputs holding inf/NaN may give finite results "
                                    "where onnxruntime gives NaN; see README, 'IEEE special values')", type=bool)
    csim_cache: str | Path | None = option(None, "directory of the C-simulation builds (default "  # noqa: RUF009
                                                 "~/.cache/sparsecc/hls)")
    csim_stack_mib: int | None = option(None, "stack of the C-simulation thread in MiB (default: from the buffers)",
                                        type=int, cli=False)
    emit_source: str | Path | None = option(None, "accepted for the CLI: the project is source", cli=False)  # noqa: RUF009


#: each target's options dataclass
TARGET_OPTIONS: dict[str, type] = {"llvm": LLVMTargetOptions, "cuda": CUDATargetOptions, "hls": HLSTargetOptions}


def option_names(target: str) -> list[str]:
    """The names of a target's options, in declaration order."""
    return [spec.name for spec in option_specs(TARGET_OPTIONS[target])]
