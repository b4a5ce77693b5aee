"""Robustness results: merge ``sparsecc evaluate --json`` files into one markdown table and one plot.

    python -m sparsecc.benchmarks.robustness RUN.json [RUN.json ...] [--plot OUT.png] [--title TEXT]

The runs must share samples, noise levels and seed (so every engine saw the same noisy inputs); engines of
different models are labelled with the model's file name. benchmarks/results/robustness.md says which
``sparsecc evaluate`` commands wrote the JSON files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..driver.evaluation_report import from_json, markdown, merge, write_plot


def main(argv: Sequence[str] | None = None) -> int:
    """Print the merged markdown table; write the plot when asked."""
    parser = argparse.ArgumentParser(prog="python -m sparsecc.benchmarks.robustness",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by sparsecc evaluate --json")
    parser.add_argument("--plot", type=Path, help="accuracy vs noise level, one line per engine")
    parser.add_argument("--title", help="plot title")
    args = parser.parse_args(argv)
    result = merge([from_json(json.loads(path.read_text())) for path in args.runs])
    print(markdown(result))
    if args.plot:
        write_plot(result, args.plot, title=args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
