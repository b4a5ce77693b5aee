"""Compiled artifacts on disk: a directory with the target's files and ``manifest.json``.

The manifest identifies itself (``"format": "sparsecc-artifact"``, ``"format_version"``), names the model,
target, the pipeline that produced it, the sparsecc version, the inputs/outputs (name, shape with ``null``
for a dynamic batch, IR dtype), the files by role (``files``: role -> name) and every file of the artifact
with its size and SHA-256 (``contents``). ``read_manifest`` validates all of it and checks every file
against its digest, so an edited, truncated or corrupted artifact is an :class:`ArtifactError` at load,
never a crash in native code. Unknown extra keys (e.g. a later ``"host"`` section) are kept.

``write_artifact`` writes a temporary sibling directory and renames it into place; it replaces only an
empty directory or an intact sparsecc artifact (see :mod:`.artifact_files`), under an ``fcntl`` lock.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
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
from .artifact_files import digest_tree, export_lock, remove_listed, safe_name, tree_files, verify_file

FORMAT = "sparsecc-artifact"
FORMAT_VERSION = 2  # 2: ``contents`` lists every file with size and SHA-256
MANIFEST = "manifest.json"
TARGETS = ("llvm", "cuda", "hls")
_KNOWN_KEYS = {"format", "format_version", "sparsecc_version", "model", "target", "target_options", "pipeline",
               "batch", "files", "contents", "inputs", "outputs"}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(data: Any, what: str) -> TensorSpec:
        if not isinstance(data, dict) or set(data) != {"name", "shape", "dtype"}:
            raise ArtifactError(f"{what} must be {{'name', 'shape', 'dtype'}}, got {data!r}")
        name, shape, dtype = data["name"], data["shape"], data["dtype"]
        if not isinstance(name, str):
            raise ArtifactError(f"{what} has a bad name {name!r}")
        if not isinstance(shape, list) or any(
                d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1) for d in shape):
            raise ArtifactError(f"{what} '{name}' has a bad shape {shape!r}")
        if any(d is None for d in shape[1:]):
            raise ArtifactError(f"{what} '{name}' has a dynamic dimension other than the batch: {shape!r}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ArtifactError(f"{what} '{name}' has an unknown dtype {dtype!r}")
        return TensorSpec(name, tuple(shape), dtype)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-].*)?", text)
    return tuple(int(g or 0) for g in match.groups()) if match else None


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
    contents: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # name -> {size, sha256}
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # keys of later versions, kept as they are

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sparsecc_version": self.sparsecc_version,
            "model": self.model, "target": self.target, "target_options": self.target_options,
            "pipeline": self.pipeline, "batch": self.batch, "files": self.files,
            "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
            **self.extra, "contents": self.contents,
        }

    @staticmethod
    def from_json(data: Any) -> Manifest:
        """A validated manifest; anything malformed is an ArtifactError naming the field."""
        from .. import __version__

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError("not a sparsecc manifest (no \"format\": \"sparsecc-artifact\")")
        version = data.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ArtifactError(f"artifact format {version!r}; this sparsecc reads {FORMAT_VERSION}: recompile it")
        missing = sorted(_KNOWN_KEYS - set(data))
        if missing:
            raise ArtifactError(f"the manifest lacks {', '.join(missing)}")
        written_by = data["sparsecc_version"]
        ours, theirs = _version_tuple(__version__), _version_tuple(written_by) if isinstance(written_by, str) else None
        if theirs is None:
            raise ArtifactError(f"the manifest has a bad sparsecc_version {written_by!r}")
        if ours is not None and theirs > ours:
            raise ArtifactError(f"written by sparsecc {written_by}, newer than this sparsecc {__version__}: "
                                "upgrade sparsecc or recompile the model")
        for key in ("model", "pipeline"):
            if not isinstance(data[key], str):
                raise ArtifactError(f"the manifest's {key} must be a string, got {data[key]!r}")
        if not isinstance(data["target"], str) or data["target"] not in TARGETS:
            raise ArtifactError(f"the manifest names an unknown target {data['target']!r}")
        if not isinstance(data["target_options"], dict):
            raise ArtifactError(f"the manifest's target_options must be an object, got {data['target_options']!r}")
        batch = data["batch"]
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise ArtifactError(f"the manifest's batch must be null or a positive int, got {batch!r}")
        contents = data["contents"]
        if not isinstance(contents, dict) or not contents:
            raise ArtifactError(f"the manifest's contents must list the artifact's files, got {contents!r}")
        for name in contents:
            safe_name(name, "a file in the manifest's contents")
        files = data["files"]
        if not isinstance(files, dict) or not files:
            raise ArtifactError(f"the manifest's files must map roles to file names, got {files!r}")
        for role, name in files.items():
            safe_name(name, f"the {role} file")
            if name not in contents:
                raise ArtifactError(f"the {role} file {name} is not listed in the manifest's contents")
        specs = []
        for key in ("inputs", "outputs"):
            if not isinstance(data[key], list) or not data[key]:
                raise ArtifactError(f"the manifest's {key} must be a non-empty list, got {data[key]!r}")
            specs.append([TensorSpec.from_json(t, key[:-1]) for t in data[key]])
            names = [t.name for t in specs[-1]]
            if len(set(names)) != len(names):
                raise ArtifactError(f"the manifest's {key} repeat a name: {names}")
        if batch is not None and any(None in t.shape for t in specs[0] + specs[1]):
            raise ArtifactError(f"the manifest says batch {batch} but has dynamic shapes")
        return Manifest(
            model=data["model"], target=data["target"], pipeline=data["pipeline"], batch=batch, files=dict(files),
            target_options=dict(data["target_options"]), inputs=specs[0], outputs=specs[1],
            sparsecc_version=written_by, contents=dict(contents),
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
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


def _load_json(root: Path) -> Any:
    file = root / MANIFEST
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"cannot read {file}: {exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{file} is not valid JSON: {str(exc)[:200]}") from None


def read_manifest(path: str | os.PathLike[str], *, verify: bool = True) -> Manifest:
    """The validated manifest of the artifact at ``path``; with ``verify``, every file listed in it is
    checked for size and SHA-256 (a mismatch, a missing file or a symbolic link is an ArtifactError)."""
    if not isinstance(path, str | os.PathLike):
        raise ArtifactError(f"an artifact path must be a str or os.PathLike, got {type(path).__name__}")
    root = Path(path)
    if not root.exists():
        raise ArtifactError(f"artifact not found: {root}")
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise ArtifactError(f"{root} is not a sparsecc artifact (no {MANIFEST})")
    try:
        manifest = Manifest.from_json(_load_json(root))
    except ArtifactError as error:
        raise ArtifactError(f"{root}: {error.message}") from None
    for role, name in manifest.files.items():
        if not (root / name).exists() and not (root / name).is_symlink():
            raise ArtifactError(f"{root} is incomplete: its {role} file {name} is missing")
    if verify:
        for name, entry in manifest.contents.items():
            verify_file(root, name, entry)
    return manifest


def _check_path_shape(path: str | os.PathLike[str]) -> Path:
    """The checks of an output path that read nothing: a name to create, not a symbolic link, an existing
    parent, not the current directory or one above it."""
    if not isinstance(path, str | os.PathLike):
        raise ArtifactError(f"the output path must be a str or os.PathLike, got {type(path).__name__}")
    dest = Path(path)
    if not dest.name or dest.name in (".", ".."):
        raise ArtifactError(f"output path {str(path)!r} must name a directory to create, not '.' or '..'")
    if dest.is_symlink():
        raise ArtifactError(f"output path {dest} is a symbolic link; give the real directory")
    parent = dest.parent
    if not parent.is_dir():
        raise ArtifactError(f"output directory {parent} does not exist")
    resolved, cwd = dest.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ArtifactError(f"output path {dest} is the current directory or one above it; refusing to replace it")
    return dest


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Whether an artifact may be written to ``path``; raises ArtifactError (before anything is written)
    unless ``path`` is new, an empty directory, or an intact sparsecc artifact (or one of an older format)
    whose every file its manifest lists. Returns the path."""
    dest = _check_path_shape(path)
    if not dest.exists():
        return dest
    if not dest.is_dir():
        raise ArtifactError(f"output path {dest} exists and is not a directory; refusing to overwrite it")
    if not any(dest.iterdir()):
        return dest
    if not (dest / MANIFEST).is_file():
        raise ArtifactError(f"output path {dest} exists and is not a sparsecc artifact; refusing to overwrite it")
    listed = _listed_files(dest, verify=True)
    unlisted = [n for n in tree_files(dest) if n != MANIFEST and n not in listed]
    if unlisted:
        raise ArtifactError(f"output path {dest} holds files that are not part of its artifact "
                            f"({', '.join(unlisted[:3])}); refusing to overwrite it")
    return dest


def _listed_files(dest: Path, *, verify: bool) -> list[str]:
    """The files (besides the manifest) of the artifact at ``dest``: those its manifest lists, checked with
    ``verify``; for an artifact an older sparsecc wrote (a lower ``format_version``, no digests), the files it
    names by role — what a user recompiling into the same path expects to be replaced. ArtifactError otherwise."""
    try:
        return list(read_manifest(dest, verify=verify).contents)
    except ArtifactError as error:
        older = _older_artifact_files(dest)
        if older is None:
            raise ArtifactError(f"output path {dest} exists and is not an intact sparsecc artifact "
                                f"({error.message}); refusing to overwrite it") from None
        return older


def _older_artifact_files(root: Path) -> list[str] | None:
    """The files an artifact of an older format lists under ``files`` (names inside ``root``, as
    :func:`~.artifact_files.safe_name` checks them), or None when ``root`` holds no such manifest."""
    try:
        data = _load_json(root)
    except ArtifactError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    version, files = data.get("format_version"), data.get("files")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < FORMAT_VERSION:
        return None
    if not isinstance(files, dict):
        return None
    try:
        names = {safe_name(name, "a listed file") for name in files.values()}
    except ArtifactError:
        return None
    return None if MANIFEST in names else sorted(names)


def write_artifact(path: str | os.PathLike[str], manifest: Manifest, write_files: Callable[[Path], None]) -> Path:
    """Create the artifact directory ``path`` atomically: files, the manifest with their digests, one rename.

    An existing ``path`` is replaced only when :func:`check_output_path` accepts it (checked again under the
    lock); exports into one parent directory serialise on an ``fcntl`` lock."""
    dest = _check_path_shape(path)
    parent = dest.parent
    with export_lock(parent):
        check_output_path(dest)  # under the lock: another export may be replacing ``dest`` right now
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new.", dir=parent))
        try:
            write_files(tmp)
            contents = digest_tree(tmp, skip=MANIFEST)
            for role, name in manifest.files.items():
                if name not in contents:
                    raise ArtifactError(f"internal: the {role} file {name} was not written")
            manifest.contents = contents
            (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; an artifact is an ordinary directory
            _replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary directory
            raise
    return dest


def _replace(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest``; a previous (checked) artifact at ``dest`` is moved aside first and then
    removed file by file, so nothing it did not list is ever deleted."""
    if not dest.exists() or not any(dest.iterdir()):
        os.rename(new, dest)  # onto an empty directory: fails (ENOTEMPTY) if something appeared in it meanwhile
        return
    listed = [*_listed_files(dest, verify=False), MANIFEST]
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    os.rename(dest, old)  # replaces the empty directory ``old``
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    remove_listed(old, listed)  # anything else that appeared meanwhile stays, in ``old``


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
        return check_feeds(self._signature, feeds)

    @functools.cached_property
    def _signature(self) -> list[tuple[str, tuple[int | None, ...], np.dtype]]:
        return [(t.name, t.shape, DTYPES[t.dtype]) for t in self.manifest.inputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run on ``feeds`` (name -> array); returns the requested outputs (all when None) in order."""
        if output_names is None:  # the common case, kept short: it runs on every call
            return self._execute(self.check_feeds(feeds))
        if isinstance(output_names, str | bytes):
            raise InputError(f"output_names must be a list of names or None, got the string {output_names!r}")
        wanted = list(output_names)
        unknown = [n for n in wanted if n not in self.output_names]
        if unknown:
            raise InputError(f"unknown output(s) {unknown}; the model has {self.output_names}")
        results = dict(zip(self.output_names, self._execute(self.check_feeds(feeds)), strict=True))
        return [results[n] for n in wanted]

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def export(self, path: str | os.PathLike[str]) -> Path:
        raise NotImplementedError
