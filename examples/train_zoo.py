"""Train the GSC zoo architectures on scikit-learn's bundled digits and export them to ONNX (the trained zoo).

Usage: ``python -m sparsecc.examples.train_zoo [--out DIR] [--models a,b] [--epochs N] [--seed S]``
(``make zoo-trained``). Needs the ``dev`` extra (torch, scikit-learn); reads no network.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 images, 10 classes), pixel values 0..16 mapped to [-1, 1]
and upsampled bilinearly to the GSC input 1x32x32; a stratified held-out split (25%, seeded) is written
as ``digits_test.npz``. The models keep the zoo's exact layer structure (examples/models/gsc.py), including
its 12 output units: digits uses classes 0..9, the two extra outputs are trained down like any wrong class.

Training follows nupic.torch: in train mode every k-WTA layer uses its training k and updates its duty
cycles (examples/models/layers.py); the fixed fan-in masks are re-applied after every optimiser step; the
boost strength decays by ``boost_strength_factor`` after every epoch. SGD with momentum, NLL loss on the
LogSoftmax output, seeded (same seed and thread count -> same weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..frontends.torch import export as export_onnx
from .models.gsc import GSC_INPUT_SHAPE, DenseCNN2, GSCSparseCNN
from .models.layers import rezero_weights, update_boost_strength
from .trained import TEST_SPLIT, TRAINED_MODELS, default_cache_dir

__all__ = ["TrainResult", "digits_splits", "main", "train"]

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {"GSCSparseCNN": GSCSparseCNN, "DenseCNN2": DenseCNN2}
DEFAULT_EPOCHS = 2


@dataclass(frozen=True)
class TrainResult:
    """What one training run did (written as ``<name>.json`` next to the model)."""

    name: str
    architecture: str
    epochs: int
    seed: int
    batch_size: int
    learning_rate: float
    train_samples: int
    test_samples: int
    train_seconds: float
    torch_threads: int
    test_accuracy: float  # torch, eval mode, held-out split


def digits_splits(seed: int = 0, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as (x_train, y_train, x_test, y_test): x (N, 1, 32, 32) float32 in [-1, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    x = F.interpolate(images, size=GSC_INPUT_SHAPE[1:], mode="bilinear", align_corners=False).numpy()
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return (np.ascontiguousarray(x_train, dtype=np.float32), y_train,
            np.ascontiguousarray(x_test, dtype=np.float32), y_test)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[start:start + batch]))
            correct += int((logits.argmax(dim=1).numpy() == y[start:start + batch]).sum())
    return correct / len(x)


def train(name: str, *, epochs: int = DEFAULT_EPOCHS, seed: int = 0, batch_size: int = 32,
          learning_rate: float = 0.02, max_train_samples: int | None = None,
          log: Callable[[str], None] | None = None) -> tuple[nn.Module, TrainResult]:
    """Train trained-zoo model ``name`` on the digits training split; returns the model (eval mode) and stats."""
    if name not in TRAINED_MODELS:
        raise ValueError(f"unknown trained model {name!r}; known: {', '.join(TRAINED_MODELS)}")
    architecture = TRAINED_MODELS[name]
    x_train, y_train, x_test, y_test = digits_splits(seed)
    if max_train_samples is not None:
        x_train, y_train = x_train[:max_train_samples], y_train[:max_train_samples]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[architecture]()
        optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
        schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=1, gamma=0.8)
        order = torch.Generator().manual_seed(seed)
        inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
        start = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            permutation = torch.randperm(len(inputs), generator=order)
            total = 0.0
            for first in range(0, len(inputs), batch_size):
                index = permutation[first:first + batch_size]
                if len(index) < 2:  # BatchNorm needs two samples in train mode
                    continue
                optimiser.zero_grad()
                loss = F.nll_loss(model(inputs[index]), labels[index])
                loss.backward()
                optimiser.step()
                model.apply(rezero_weights)  # fixed fan-in masks after every step
                total += loss.item() * len(index)
            schedule.step()
            model.apply(update_boost_strength)  # nupic decays the boost once per epoch
            if log:
                log(f"{name}: epoch {epoch + 1}/{epochs} loss {total / len(inputs):.4f} "
                    f"({time.perf_counter() - start:.1f} s)")
        seconds = time.perf_counter() - start
    model.eval()
    result = TrainResult(name, architecture, epochs, seed, batch_size, learning_rate, len(x_train), len(x_test),
                         round(seconds, 2), torch.get_num_threads(), accuracy(model, x_test, y_test))
    return model, result


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(model: nn.Module, result: TrainResult, out: Path, seed: int) -> Path:
    """Export the trained model to ``out/<name>.onnx`` with its ``.json`` and the test split; returns the model path."""
    out.mkdir(parents=True, exist_ok=True)
    _, _, x_test, y_test = digits_splits(seed)
    with open(out / f".{TEST_SPLIT}.tmp", "wb") as handle:
        np.savez(handle, x=x_test, y=y_test)
    os.replace(out / f".{TEST_SPLIT}.tmp", out / TEST_SPLIT)
    path = out / f"{result.name}.onnx"
    _write_atomic(path, lambda tmp: export_onnx(model, tmp, GSC_INPUT_SHAPE, opset=17, dynamic_batch=True))
    _write_atomic(out / f"{result.name}.json",
                  lambda tmp: tmp.write_text(json.dumps(asdict(result), indent=2) + "\n"))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Train and export the chosen models; exit status 2 on an unknown name."""
    parser = argparse.ArgumentParser(prog="python -m sparsecc.examples.train_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_cache_dir(),
                        help=f"output folder (default {default_cache_dir()})")
    parser.add_argument("--models", default=",".join(TRAINED_MODELS),
                        help=f"comma-separated names (default: {','.join(TRAINED_MODELS)})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRAINED_MODELS]
    if unknown or args.epochs < 1:
        problem = f"unknown model(s) {', '.join(unknown)}" if unknown else "--epochs must be >= 1"
        print(f"train_zoo: error: {problem}; models: {', '.join(TRAINED_MODELS)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in names:
        model, result = train(name, epochs=args.epochs, seed=args.seed, log=lambda m: print(m, flush=True))
        path = save(model, result, args.out, args.seed)
        print(f"{name}: {path}: held-out accuracy {result.test_accuracy:.4f} ({result.test_samples} samples), "
              f"trained in {result.train_seconds:.1f} s on {result.torch_threads} thread(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
