"""What the machine running sparsecc is: its architecture and the ISA features its CPU executes.

Both the compiler (to choose the default ``--mcpu`` and to mask features a virtual machine hides) and the
runtime (to refuse an artifact whose code this CPU cannot execute, instead of dying with SIGILL) ask here.
Host features come from ``archspec`` (the operating system's view: ``/proc/cpuinfo`` flags on Linux); feature
names are LLVM's (``avx512f``, ``fma``, ``neon``), translated from the OS names by one table.
"""

from __future__ import annotations

import functools
import platform

#: LLVM feature name -> the name the OS (Linux /proc/cpuinfo, as archspec reports it) gives it. Only features
#: that change which instructions code may contain are listed; these are the ones an artifact records.
X86_FEATURES = {
    "sse2": "sse2", "sse3": "sse3", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1",
    "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe", "aes": "aes", "pclmul": "pclmulqdq",
    "vaes": "vaes", "vpclmulqdq": "vpclmulqdq", "gfni": "gfni", "sha": "sha_ni", "adx": "adx",
    "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw", "avx512dq": "avx512dq",
    "avx512vl": "avx512vl", "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq", "avx512ifma": "avx512ifma",
    "avxvnni": "avx_vnni",
}
AARCH64_FEATURES = {
    "neon": "asimd", "fp-armv8": "fp", "fullfp16": "asimdhp", "dotprod": "asimddp", "sve": "sve",
    "sve2": "sve2", "i8mm": "i8mm", "bf16": "bf16", "lse": "atomics", "rcpc": "lrcpc",
}
#: the OS names archspec uses for a few x86 features differ between its versions; accept either
_ALIASES = {"sse3": ("sse3", "pni"), "sha_ni": ("sha_ni", "sha")}


def normalize_arch(name: str) -> str:
    """``x86_64`` or ``aarch64`` for the usual spellings (``amd64``, ``arm64``, a triple's first field)."""
    name = name.lower().split("-")[0]
    return {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64"}.get(name, name)


def host_arch() -> str:
    return normalize_arch(platform.machine())


def feature_table(arch: str) -> dict[str, str]:
    """LLVM name -> OS name of the features recorded for ``arch`` (empty for other architectures)."""
    return {"x86_64": X86_FEATURES, "aarch64": AARCH64_FEATURES}.get(normalize_arch(arch), {})


@functools.cache
def _os_features() -> frozenset[str] | None:
    """The host CPU's features as the OS names them, or None when they cannot be read."""
    try:
        import archspec.cpu.detect

        # the raw flags the OS reports (host() would give only those of the nearest named microarchitecture)
        return frozenset(archspec.cpu.detect.detected_info().features)
    except Exception:  # archspec cannot read this OS: the checks below then trust the artifact
        return None


def host_features() -> frozenset[str] | None:
    """The recorded (LLVM-named) features the host CPU has, or None when the OS does not tell."""
    os_features = _os_features()
    if os_features is None:
        return None
    have = set()
    for llvm_name, os_name in feature_table(host_arch()).items():
        if any(alias in os_features for alias in _ALIASES.get(os_name, (os_name,))):
            have.add(llvm_name)
    if host_arch() == "aarch64":
        have |= {"neon", "fp-armv8"}  # architectural on AArch64 Linux, whatever the flags say
    return frozenset(have)


def missing_features(required: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The features in ``required`` that the host CPU lacks (empty when all are there or unknown)."""
    have = host_features()
    if have is None:
        return []
    known = feature_table(host_arch())
    return sorted(f for f in required if f in known and f not in have)


def cannot_execute(target_entry: dict[str, object]) -> str | None:
    """Why this host cannot execute code built for ``target_entry`` (an llvm manifest's target options:
    ``mtriple``, ``mcpu``, ``features``), or None when it can. Checked before the library is loaded, so a
    mismatch is an error message instead of SIGILL or an ``Exec format error``."""
    triple = str(target_entry.get("mtriple", ""))
    if triple and normalize_arch(triple) != host_arch():
        return (f"it was compiled for {triple} and this host is {host_arch()}: run it on such a machine "
                f"(or through --rpc), or recompile with --mtriple {host_arch()}-linux-gnu")
    features = target_entry.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        return "its manifest's target features are malformed"
    missing = missing_features(features)
    if missing:
        return (f"it was compiled for CPU '{target_entry.get('mcpu')}' and needs CPU features this host lacks: "
                f"{', '.join(missing)}; recompile it here (the default --mcpu is this host's CPU)")
    return None
