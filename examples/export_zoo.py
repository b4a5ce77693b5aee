"""Export the model zoo to ONNX.

Usage: ``python -m sparsecc.examples.export_zoo --out DIR [--models a,b] [--seed N]``.

Writes ``DIR/<name>.onnx`` for each model (opset 17, dynamic batch). ONNX files are build outputs and are
never committed (``*.onnx`` is git-ignored).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .models.zoo import ZOO, export


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m sparsecc.examples.export_zoo", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--models", default=",".join(ZOO), help=f"comma-separated model names (default: {', '.join(ZOO)})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, masks and calibration data")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export the chosen zoo models; return the process exit status (2 on an unknown model name)."""
    args = parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in ZOO]
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(ZOO)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        path = export(name, args.out / f"{name}.onnx", seed=args.seed)
        size_mb = path.stat().st_size / 1e6
        print(f"{name}: {path} ({size_mb:.1f} MB, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
