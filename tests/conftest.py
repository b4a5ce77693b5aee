"""Shared fixtures: zoo models exported to ONNX once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sparsecc.examples.models import zoo


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


_EXPORTED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def zoo_onnx(zoo_dir: Path) -> Callable[[str], Path]:
    """``zoo_onnx(name)`` -> path of the model's ONNX export (exported once per session)."""

    def get(name: str) -> Path:
        if name not in _EXPORTED:
            _EXPORTED[name] = zoo.export(name, zoo_dir / f"{name}.onnx", seed=0)
        return _EXPORTED[name]

    return get
