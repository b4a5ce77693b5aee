"""The CPU the llvm target compiles for: triple, CPU name, feature overrides, and the ISA class they imply.

``resolve_cpu(mcpu, mtriple, mattr)`` is the one place that turns the user's choice (or the host) into a
validated :class:`CpuTarget`. The kernels ask only for its :attr:`CpuTarget.isa` class (``avx512``, ``avx2``,
``sse2``, ``neon``), so no ISA-specific instruction reaches a CPU that lacks it; the kernel profile of that
class decides which kernel family each layer gets (see ``targets/llvm/profile.py``).

Defaults: the host's triple and CPU as LLVM names it (``llvm::sys::getHostCPUName``), with every recorded
feature that the operating system says this CPU lacks switched off (virtual machines often hide features
that the CPU model implies). ``SPARSECC_MCPU`` names a default CPU for the host triple instead (so a whole test
run can compile as if the host were, say, ``haswell``); an explicit ``mcpu`` always wins. The compile log
and the manifest say which CPU was used.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ...compiler.errors import CompileError
from ...runtime.host import feature_table, host_arch, host_features, normalize_arch

ARCHS = ("x86_64", "aarch64")
#: ISA classes, widest first; each has its own kernel profile
ISA_CLASSES = ("avx512", "avx2", "sse2", "neon")
#: the baseline CPU of each architecture (used when the host CPU is not known to LLVM)
BASELINE_CPU = {"x86_64": "x86-64", "aarch64": "generic"}
EXAMPLE_CPUS = {"x86_64": "x86-64-v2, haswell, znver3, skylake-avx512", "aarch64": "generic, cortex-a72, neoverse-n1"}
_AVX512 = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})
_AVX2 = frozenset({"avx2", "fma"})


@dataclasses.dataclass(frozen=True)
class CpuTarget:
    """A validated LLVM CPU description.

    Attributes:
        mtriple: target triple (``x86_64-linux-gnu``, ``aarch64-linux-gnu``).
        mcpu: LLVM CPU name (``haswell``, ``znver5``, ``neoverse-n1``).
        mattr: feature overrides as LLVM takes them (``+avx2``, ``-avx512f``).
        features: the recorded ISA features the generated code may use (after ``mattr``).
        isa: the ISA class the kernels are generated for.
        source: where ``mcpu`` came from (``user``, ``host``, ``SPARSECC_MCPU``, ``default``).
    """

    mtriple: str
    mcpu: str
    mattr: tuple[str, ...]
    features: frozenset[str]
    isa: str
    source: str = "user"

    @property
    def arch(self) -> str:
        return normalize_arch(self.mtriple)

    @property
    def is_host_arch(self) -> bool:
        return self.arch == host_arch()

    def tvm_target(self, num_cores: int | None = None) -> Any:
        import tvm

        spec = _spec(self.mtriple, self.mcpu, self.mattr)
        if num_cores:
            spec["num-cores"] = num_cores
        return tvm.target.Target(spec)

    def manifest_entry(self) -> dict[str, Any]:
        """What an artifact records so that ``load`` can refuse a host that cannot execute it."""
        return {"mtriple": self.mtriple, "mcpu": self.mcpu, "mattr": list(self.mattr), "isa": self.isa,
                "features": sorted(self.features)}

    def describe(self) -> str:
        extra = f" {','.join(self.mattr)}" if self.mattr else ""
        origin = "" if self.source == "user" else f", from {self.source}"
        return f"{self.mcpu}{extra} ({self.mtriple}, {self.isa}{origin})"


def _spec(mtriple: str, mcpu: str, mattr: tuple[str, ...]) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "llvm", "mtriple": mtriple, "mcpu": mcpu}
    if mattr:
        spec["mattr"] = list(mattr)
    return spec


def parse_mattr(mattr: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"+f,-g"`` or ``["+f", "-g"]`` -> ``("+f", "-g")``; each entry must start with + or -."""
    if mattr is None:
        return ()
    if isinstance(mattr, str):
        items = [m.strip() for m in mattr.split(",") if m.strip()]
    elif isinstance(mattr, list | tuple) and all(isinstance(m, str) for m in mattr):
        items = [m.strip() for m in mattr]
    else:
        raise CompileError(f"mattr must be a string such as '+avx2,-avx512f' or a list of them, got {mattr!r}")
    for item in items:
        if len(item) < 2 or item[0] not in "+-":
            raise CompileError(f"mattr entry '{item}' must be +FEATURE or -FEATURE (e.g. '-avx512f')")
    return tuple(items)


def host_triple() -> str:
    return f"{host_arch()}-linux-gnu"


def _llvm_features(mtriple: str, mcpu: str, mattr: tuple[str, ...]) -> frozenset[str]:
    import tvm
    from tvm.target import codegen

    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(tvm.target.Target(_spec(mtriple, mcpu, mattr))))


def _valid_cpu(mcpu: str, mtriple: str) -> bool:
    from tvm.target import codegen

    return bool(codegen.llvm_is_valid_cpu(mcpu, mtriple))


def _host_cpu_name() -> str | None:
    try:
        from tvm.target import codegen

        name = str(codegen.llvm_get_system_cpu())
    except Exception:  # LLVM could not tell: the baseline is used
        return None
    return name if name and name != "generic" else None


def isa_class(arch: str, features: frozenset[str]) -> str:
    """The widest ISA class whose features are all present."""
    if arch == "aarch64":
        return "neon"
    if features >= _AVX512:
        return "avx512"
    if features >= _AVX2:
        return "avx2"
    return "sse2"


def resolve_cpu(mcpu: str | None = None, mtriple: str | None = None,
                mattr: str | list[str] | tuple[str, ...] | None = None) -> CpuTarget:
    """Validate a CPU choice (defaults: the host) and work out its features and ISA class."""
    if mcpu is not None and (not isinstance(mcpu, str) or not mcpu.strip()):
        raise CompileError(f"mcpu must be an LLVM CPU name such as 'haswell', got {mcpu!r}")
    if mtriple is not None and (not isinstance(mtriple, str) or not mtriple.strip()):
        raise CompileError(f"mtriple must be a target triple such as 'aarch64-linux-gnu', got {mtriple!r}")
    triple = mtriple or host_triple()
    arch = normalize_arch(triple)
    if arch not in ARCHS:
        raise CompileError(f"unsupported target triple '{triple}': the llvm target builds for "
                           f"{' and '.join(ARCHS)} (e.g. x86_64-linux-gnu, aarch64-linux-gnu)")
    overrides = parse_mattr(mattr)
    source = "user"
    if mcpu is None:
        env = os.environ.get("SPARSECC_MCPU", "").strip()
        if env and arch == host_arch():
            mcpu, source = env, "SPARSECC_MCPU"
        elif arch == host_arch():
            mcpu, source = _host_cpu_name() or BASELINE_CPU[arch], "host"
            if not _valid_cpu(mcpu, triple):
                mcpu = BASELINE_CPU[arch]
        else:
            mcpu, source = BASELINE_CPU[arch], "default"
    if not _valid_cpu(mcpu, triple):
        examples = EXAMPLE_CPUS[arch]
        raise CompileError(f"unknown CPU '{mcpu}' for {triple} (LLVM names such as {examples})")
    features = _llvm_features(triple, mcpu, overrides)
    for item in overrides:
        if item[0] == "+" and item[1:] not in features:
            raise CompileError(f"unknown CPU feature '{item[1:]}' in mattr for {triple}")
    if source == "host":
        # a virtual machine may hide features that the CPU model implies: switch those off
        have = host_features()
        if have is not None:
            hidden = sorted(f for f in features if f in feature_table(arch) and f not in have)
            if hidden:
                overrides = (*overrides, *(f"-{f}" for f in hidden))
                features = _llvm_features(triple, mcpu, overrides)
    recorded = frozenset(f for f in features if f in feature_table(arch))
    return CpuTarget(triple, mcpu, overrides, recorded, isa_class(arch, recorded), source)
