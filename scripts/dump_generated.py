"""Dump the code every target generates for the zoo models, to diff two commits byte for byte.

Usage: ``python -m sparsecc.scripts.dump_generated --out DIR [--models a,b] [--targets llvm,cuda,hls]``
(or ``python scripts/dump_generated.py`` with ``sparsecc`` importable).

For each model (exported from ``examples/models/zoo.py`` with seed 0, cached in ``DIR/onnx``):

- ``llvm``: the Relax program and TIR kernels as TVMScript, for each ISA class (``avx512``, ``avx2``, ``sse2``,
  ``neon``), after that ISA's default pipeline (no LLVM run: the TIR is what the lowering decides);
- ``cuda``: the Relax/TIR script and the CUDA C source TVM generates from it (no nvcc run, no GPU);
- ``hls``: every file of the generated project (one lane, and with ``budget=zcu104``), except the testbench
  expectation, which needs a C-simulation run.

Refactorings of the lowering keep ``diff -r`` of two dumps empty.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ISAS = ("avx512", "avx2", "sse2", "neon")
TARGETS = ("llvm", "cuda", "hls")


def _onnx(name: str, cache: Path) -> Path:
    from sparsecc.examples.models.zoo import export

    path = cache / f"{name}.onnx"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        export(name, path, seed=0)
    return path


def dump_llvm(model: Path, out: Path) -> None:
    """The TVMScript of the lowered module for each ISA class."""
    from sparsecc.compiler.kernel_profile import profile_for
    from sparsecc.driver.api import optimize
    from sparsecc.targets.llvm.lowering import KERNELS
    from sparsecc.targets.relax_lowering import RelaxLowering

    for isa in ISAS:
        module, _ = optimize(model, target="llvm", profile=profile_for("llvm", isa))
        try:
            script = RelaxLowering(module, KERNELS, isa=isa).build().script()
        except Exception as exc:  # a failure is part of what the dump records (and compares)
            script = f"lowering failed: {type(exc).__name__}: {exc}\n"
            print(f"{model.stem} llvm-{isa}: {script}", end="", file=sys.stderr)
        (out / f"llvm-{isa}.py").write_text(script)


def dump_cuda(model: Path, out: Path) -> None:
    """The TVMScript of the lowered module and the CUDA source TVM generates (no nvcc)."""
    from tvm import relax

    from sparsecc.driver.api import optimize
    from sparsecc.targets.cuda import cuda_target, relax_pipeline
    from sparsecc.targets.cuda.lowering import CUDALowering

    module, _ = optimize(model, target="cuda")
    irmod = CUDALowering(module).build()
    (out / "cuda.py").write_text(irmod.script())
    target = cuda_target()
    executable = relax.build(irmod, target=target, relax_pipeline=relax_pipeline(target))
    from sparsecc.targets.cuda import device_module

    (out / "cuda.cu").write_text(str(device_module(executable).inspect_source("cuda")))


def dump_hls(model: Path, out: Path) -> None:
    """Every file of the generated HLS project (one lane; and the ZCU104 budget's lanes)."""
    import sparsecc

    for variant, options in (("hls", {}), ("hls-zcu104", {"budget": "zcu104"})):
        compiled = sparsecc.compile(model, target="hls", **options)
        for relative, data in compiled.files.items():
            path = out / variant / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


DUMPERS = {"llvm": dump_llvm, "cuda": dump_cuda, "hls": dump_hls}


def main(argv: Sequence[str] | None = None) -> int:
    """Dump the chosen models' generated code; the exit status is 0."""
    from sparsecc.examples.models.zoo import ZOO

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo models (default: all)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets (default: all)")
    parser.add_argument("--onnx-cache", type=Path, default=None, help="where exported ONNX files are kept "
                        "(default: OUT/onnx)")
    args = parser.parse_args(argv)
    cache = args.onnx_cache or args.out / "onnx"
    for name in [m for m in args.models.split(",") if m]:
        model = _onnx(name, cache)
        for target in [t for t in args.targets.split(",") if t]:
            start = time.perf_counter()
            out = args.out / name
            out.mkdir(parents=True, exist_ok=True)
            DUMPERS[target](model, out)
            print(f"{name} {target}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
