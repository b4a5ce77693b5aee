"""Where the trained zoo lives (no torch needed): names, cache folder and file names.

``python -m sparsecc.examples.train_zoo`` (``make zoo-trained``) trains the GSC architectures on
scikit-learn's bundled digits and writes, into :func:`default_cache_dir` (or ``--out``)::

    <name>.onnx        the trained model (opset 17, dynamic batch, k-WTA in TopK form)
    <name>.json        how it was trained: epochs, seed, train time, held-out accuracy (torch)
    digits_test.npz    the held-out test split: x (N, 1, 32, 32) float32, y (N,) int64

``sparsecc evaluate NAME`` accepts these names in place of an ONNX path.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEST_SPLIT", "TRAINED_MODELS", "default_cache_dir", "model_path", "test_split_path"]

#: Trained zoo models: name -> the zoo architecture it trains (examples/models/gsc.py).
TRAINED_MODELS: dict[str, str] = {
    "digits_sparse_cnn": "GSCSparseCNN",
    "digits_dense_cnn2": "DenseCNN2",
}

#: File name of the held-out split written next to the models.
TEST_SPLIT = "digits_test.npz"


def default_cache_dir() -> Path:
    """The trained zoo's default folder under the user's cache (safe to delete; ``make zoo-trained`` rebuilds)."""
    return Path.home() / ".cache" / "sparsecc" / "zoo-trained"


def model_path(name: str, directory: Path | None = None) -> Path:
    """The ONNX file of trained model ``name``."""
    return (directory or default_cache_dir()) / f"{name}.onnx"


def test_split_path(directory: Path | None = None) -> Path:
    """The held-out test split written with the trained models."""
    return (directory or default_cache_dir()) / TEST_SPLIT
