"""Compiled artifacts on disk: a directory with the target's files and ``manifest.json``.

The manifest names the model, target, the pipeline that produced it, the sparsecc version, and the
inputs/outputs (name, shape with ``null`` for a dynamic batch, IR dtype). Artifacts are written into a
temporary sibling directory and renamed into place only when complete, so a failed export never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import ArtifactError, InputError
from ..compiler.feeds import check_feeds
from ..compiler.ir.core import Module
from ..compiler.ir.types import DTYPES

FORMAT = "sparsecc-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(data: dict[str, Any]) -> TensorSpec:
        return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"])


@dataclasses.dataclass
class Manifest:
    model: str
    target: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    pipeline: str
    batch: int | None
    files: dict[str, str]  # role -> file name inside the artifact
    target_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    sparsecc_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sparsecc_version": self.sparsecc_version,
            "model": self.model, "target": self.target, "target_options": self.target_options,
            "pipeline": self.pipeline, "batch": self.batch, "files": self.files,
            "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Manifest:
        return Manifest(
            model=data["model"], target=data["target"], pipeline=data["pipeline"], batch=data["batch"],
            files=dict(data["files"]), target_options=dict(data.get("target_options", {})),
            inputs=[TensorSpec.from_json(t) for t in data["inputs"]],
            outputs=[TensorSpec.from_json(t) for t in data["outputs"]],
            sparsecc_version=data.get("sparsecc_version", ""),
        )


def signature(module: Module) -> tuple[list[TensorSpec], list[TensorSpec]]:
    func = module.func
    ins = [TensorSpec(a.name or "", a.type.shape, a.type.dtype) for a in func.args]
    outs = [TensorSpec(n, v.type.shape, v.type.dtype) for n, v in zip(func.output_names, func.outputs, strict=True)]
    return ins, outs


def make_manifest(module: Module, target: str, pipeline: str, batch: int | None, files: dict[str, str],
                  target_options: dict[str, Any] | None = None) -> Manifest:
    from .. import __version__

    ins, outs = signature(module)
    return Manifest(module.name, target, ins, outs, pipeline, batch, files, dict(target_options or {}), __version__)


def write_artifact(path: str | os.PathLike[str], manifest: Manifest, write_files: Callable[[Path], None]) -> Path:
    """Create the artifact directory ``path`` atomically: files, then the manifest, then one rename."""
    dest = Path(path)
    if dest.exists() and not (dest.is_dir() and ((dest / MANIFEST).exists() or not any(dest.iterdir()))):
        raise ArtifactError(f"output path {dest} exists and is not a sparsecc artifact; refusing to overwrite it")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        raise ArtifactError(f"output directory {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=parent))
    try:
        write_files(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; an artifact is an ordinary directory
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    root = Path(path)
    if not root.exists():
        raise ArtifactError(f"artifact not found: {root}")
    file = root / MANIFEST
    if not root.is_dir() or not file.is_file():
        raise ArtifactError(f"{root} is not a sparsecc artifact (no {MANIFEST})")
    try:
        data = json.loads(file.read_text())
        if data.get("format") != FORMAT:
            raise ArtifactError(f"{file} is not a sparsecc manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{root} has artifact format {data.get('format_version')}; this sparsecc reads "
                                f"{FORMAT_VERSION}: recompile it")
        manifest = Manifest.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{file} is malformed: {exc}") from None
    for role, name in manifest.files.items():
        if not (root / name).is_file():
            raise ArtifactError(f"{root} is incomplete: its {role} file {name} is missing")
    return manifest


class CompiledModel:
    """A compiled model: ``run`` like onnxruntime's ``InferenceSession.run`` and ``export`` to a directory."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.manifest.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.manifest.outputs]

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Validate names, dtypes and shapes; returns the inputs in signature order."""
        return check_feeds([(t.name, t.shape, DTYPES[t.dtype]) for t in self.manifest.inputs], feeds)

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run on ``feeds`` (name -> array); returns the requested outputs (all when None) in order."""
        if isinstance(output_names, str | bytes):
            raise InputError(f"output_names must be a list of names or None, got the string {output_names!r}")
        wanted = self.output_names if output_names is None else list(output_names)
        unknown = [n for n in wanted if n not in self.output_names]
        if unknown:
            raise InputError(f"unknown output(s) {unknown}; the model has {self.output_names}")
        results = dict(zip(self.output_names, self._execute(self.check_feeds(feeds)), strict=True))
        return [results[n] for n in wanted]

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def export(self, path: str | os.PathLike[str]) -> Path:
        raise NotImplementedError
