"""The files of an artifact directory: safe relative names, size + SHA-256 digests, the export lock, and the
checked replacement of an earlier artifact.

Rules that keep an export from losing a user's data:

* a name in a manifest is a relative POSIX path inside the artifact (no absolute path, no ``..``, no
  backslash, no empty or ``.`` component), and the file it names is a regular file, not a symbolic link;
* an export writes a new temporary sibling directory and renames it into place; it replaces an existing
  directory only when that directory is empty or is a sparsecc artifact whose every file is listed in its
  manifest with the size and SHA-256 it has on disk (anything else is the user's and is left untouched);
* concurrent exports into one parent directory serialise on an ``fcntl.flock`` of that directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..compiler.errors import ArtifactError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def safe_name(name: Any, what: str) -> str:
    """``name`` if it is a relative POSIX path that stays inside the artifact; else ArtifactError."""
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{what} must be a non-empty file name, got {name!r}")
    path = PurePosixPath(name)
    if (not path.parts or path.is_absolute() or "\\" in name or "\0" in name or name != path.as_posix()
            or any(part in ("", ".", "..") for part in path.parts)):
        raise ArtifactError(f"{what} {name!r} is not a plain relative name inside the artifact")
    return name


def check_digest_entry(name: str, entry: Any) -> tuple[int, str]:
    """The (size, sha256) of one ``contents`` entry of a manifest, validated."""
    if not isinstance(entry, dict) or set(entry) != {"size", "sha256"}:
        raise ArtifactError(f"contents entry of {name!r} must be {{'size': int, 'sha256': hex}}, got {entry!r}")
    size, digest = entry["size"], entry["sha256"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ArtifactError(f"contents entry of {name!r} has a bad size {size!r}")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ArtifactError(f"contents entry of {name!r} has a bad sha256 {digest!r}")
    return size, digest


def digest_bytes(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_inside(root: Path, name: str) -> bytes:
    """The bytes of the regular file ``root/name``; symbolic links (at any level) and paths that leave
    ``root`` are ArtifactErrors."""
    safe_name(name, "file name")
    current = root
    for part in PurePosixPath(name).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise ArtifactError(f"{root} is incomplete: its file {name} is missing") from None
        if stat.S_ISLNK(mode):
            raise ArtifactError(f"{root}: {name} is (or passes through) a symbolic link; artifacts hold plain files")
    if not stat.S_ISREG(os.lstat(current).st_mode):
        raise ArtifactError(f"{root}: {name} is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(current, flags)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def verify_file(root: Path, name: str, entry: Any) -> bytes:
    """Read ``root/name`` and check it against its manifest entry; returns the verified bytes."""
    size, digest = check_digest_entry(name, entry)
    data = read_inside(root, name)
    if len(data) != size:
        raise ArtifactError(f"{root}: {name} has {len(data)} bytes, the manifest says {size} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError(f"{root}: {name} does not match its SHA-256 in the manifest (corrupted or modified)")
    return data


def tree_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative POSIX name, sorted; a symbolic link or special file is an
    ArtifactError (an artifact holds only directories and regular files)."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            full = Path(dirpath) / entry
            mode = os.lstat(full).st_mode
            relative = full.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{root}: {relative} is a symbolic link; artifacts hold plain files")
            if entry in filenames:
                if not stat.S_ISREG(mode):
                    raise ArtifactError(f"{root}: {relative} is not a regular file")
                names.append(relative)
    return sorted(names)


def digest_tree(root: Path, skip: str) -> dict[str, dict[str, Any]]:
    """``{name: {"size", "sha256"}}`` of every file under ``root`` except ``skip`` (the manifest)."""
    contents = {}
    for name in tree_files(root):
        if name != skip:
            contents[name] = digest_bytes((root / name).read_bytes())
    return contents


@contextlib.contextmanager
def export_lock(parent: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``parent`` (the directory the artifact is written into): exports into
    it from any process run one after the other. Nothing is created on disk for the lock."""
    try:
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise ArtifactError(f"cannot open the output directory {parent}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise ArtifactError(f"cannot lock the output directory {parent}: {exc.strerror}") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def remove_listed(root: Path, names: list[str]) -> bool:
    """Delete the listed files under ``root``, then its directories while they are empty. Returns whether
    ``root`` is gone (anything unlisted that appeared meanwhile is kept, and so is ``root``)."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    directories = sorted({p for name in names for p in PurePosixPath(name).parents if str(p) != "."},
                         key=lambda p: len(p.parts), reverse=True)
    for directory in directories:
        with contextlib.suppress(OSError):
            (root / directory).rmdir()
    try:
        root.rmdir()
    except OSError:
        return False
    return True
