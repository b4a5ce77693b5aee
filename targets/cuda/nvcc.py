"""Compiling TVM's generated CUDA C++ into one fat binary with nvcc (no GPU needed).

TVM 0.27 leaves the device code of a CUDA build as *source* when the build machine has no CUDA driver (its
``CUDAFallbackModule``), and on a machine with a driver compiles it through the ``tvm_callback_cuda_compile``
hook (NVRTC by default, which needs the ``cuda-bindings`` package). sparsecc does not rely on either: it
compiles the device source itself, once, into a fat binary that holds

* SASS for every architecture in :data:`ARCHS` (``sm_80`` = A100, ``sm_90`` = H100), and
* PTX for the lowest one (``compute_80``), which the driver JIT-compiles on newer GPUs,

from one PTX (``nvcc -ptx`` for ``compute_80``; ``ptxas`` per architecture, in parallel; ``fatbinary``).
No ``--use_fast_math``: k-WTA compares boosted values exactly as onnxruntime does, so the arithmetic stays IEEE
(no flush-to-zero, exact division and square root).
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...compiler.errors import CompileError
from ..options import CUDATargetOptions

#: Real architectures compiled to SASS; the first is also embedded as PTX.
ARCHS: tuple[str, ...] = CUDATargetOptions.archs

#: nvcc front-end flags TVM's generated code expects (half/bfloat16 operators, constexpr helpers).
FRONTEND_FLAGS = (
    "-O3",
    "-std=c++17",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
)

FATBIN_MAGIC = 0xBA55ED50


@dataclasses.dataclass(frozen=True)
class DeviceBinary:
    """The compiled device code of one model: the fat binary and the PTX it was built from."""

    fatbin: bytes
    ptx: str
    archs: tuple[str, ...]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        nvcc = shutil.which("nvcc")
        if nvcc is not None:
            candidate = Path(nvcc).resolve().parent / name
            if candidate.is_file():
                return str(candidate)
        raise CompileError(f"the cuda target needs the CUDA toolkit's {name} on PATH (CUDA 12.0 or newer); "
                           f"it was not found")
    return path


def nvcc_version() -> str:
    """``release X.Y`` of the nvcc on PATH (raises CompileError when there is none)."""
    out = subprocess.run([_tool("nvcc"), "--version"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if "release" in line:
            return line.split("release", 1)[1].split(",")[0].strip()
    return "unknown"


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        first = next((line for line in detail if "error" in line.lower()), detail[0] if detail else "")
        raise CompileError(f"{what} failed ({Path(cmd[0]).name} exit {proc.returncode}): {first.strip()}")


def compile_device_code(source: str, archs: Sequence[str] = ARCHS) -> DeviceBinary:
    """Compile CUDA C++ ``source`` to a fat binary with SASS for ``archs`` and PTX for the lowest."""
    if not archs:
        raise CompileError("no CUDA architecture to compile for")
    for arch in archs:
        if not (arch.startswith("sm_") and arch[3:].isdigit()):
            raise CompileError(f"CUDA architecture must look like sm_80, got '{arch}'")
    ordered = sorted(set(archs), key=lambda a: int(a[3:]))
    virtual = f"compute_{ordered[0][3:]}"
    with tempfile.TemporaryDirectory(prefix="sparsecc-nvcc-") as tmp:
        work = Path(tmp)
        (work / "kernels.cu").write_text(source)
        _run([_tool("nvcc"), "--ptx", f"-arch={virtual}", *FRONTEND_FLAGS, "-o", str(work / "kernels.ptx"),
              str(work / "kernels.cu")], "nvcc (CUDA C++ to PTX)")
        procs = []
        for arch in ordered:
            cmd = [_tool("ptxas"), "-O3", f"-arch={arch}", "-o", str(work / f"kernels.{arch}.cubin"),
                   str(work / "kernels.ptx")]
            procs.append((arch, cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for arch, cmd, proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                detail = (err or out).strip().splitlines()
                raise CompileError(f"ptxas for {arch} failed (exit {proc.returncode}): "
                                   f"{detail[0] if detail else ''}")
            del cmd
        images = [f"--image3=kind=elf,sm={a[3:]},file={work / f'kernels.{a}.cubin'}" for a in ordered]
        images.append(f"--image3=kind=ptx,sm={ordered[0][3:]},file={work / 'kernels.ptx'}")
        _run([_tool("fatbinary"), "-64", f"--create={work / 'kernels.fatbin'}", *images], "fatbinary")
        return DeviceBinary((work / "kernels.fatbin").read_bytes(), (work / "kernels.ptx").read_text(),
                            tuple(ordered))


@dataclasses.dataclass(frozen=True)
class FatbinEntry:
    kind: str  # "sass" or "ptx"
    arch: str  # e.g. "sm_80"


def fatbin_entries(data: bytes) -> list[FatbinEntry]:
    """The images in a fat binary (kind and architecture), read from its container headers."""
    if len(data) < 16:
        raise ValueError("not a CUDA fat binary (too short)")
    magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", data, 0)
    if magic != FATBIN_MAGIC:
        raise ValueError("not a CUDA fat binary (bad magic)")
    entries = []
    offset, end = header_size, header_size + body_size
    while offset + 32 <= min(end, len(data)):
        kind, _flags, entry_header, payload = struct.unpack_from("<HHIQ", data, offset)
        arch = struct.unpack_from("<I", data, offset + 28)[0]
        entries.append(FatbinEntry({1: "ptx", 2: "sass"}.get(kind, f"kind{kind}"), f"sm_{arch}"))
        offset += entry_header + payload
    return entries
