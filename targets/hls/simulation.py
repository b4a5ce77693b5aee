"""C-simulation of a generated project: ``csim/bridge.cpp`` + the firmware, compiled by g++ into a shared
library (against hls4ml's ap_types headers, see :mod:`sparsecc.runtime.hls.csim`) and run through ctypes.

Builds are cached by content: the project's build sources (``firmware/`` and ``csim/``) are hashed, written
once to ``<cache>/<top>-<hash>/`` and compiled there; :func:`compile_cpp` keeps its own content-keyed cache
inside. An in-memory model and the same project exported and loaded again share one build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sparsecc.runtime.hls.csim import SharedLibrary, compile_cpp

from .project import BRIDGE_SYMBOL, write_files

#: Project files that take part in the C-simulation build.
BUILD_PREFIXES = ("firmware/", "csim/")


def build_sources(files: Mapping[str, bytes]) -> dict[str, bytes]:
    return {path: content for path, content in files.items() if path.startswith(BUILD_PREFIXES)}


def source_key(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()[:16]


class CSimulation:
    """The compiled C-simulation of one project (built on first use)."""

    def __init__(self, files: Mapping[str, bytes], top: str, cache_dir: Path, stack_mib: int) -> None:
        self.sources = build_sources(files)
        self.top = top
        self.cache_dir = cache_dir
        self.stack_mib = stack_mib
        self._library: SharedLibrary | None = None
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.cache_dir / f"{self.top}-{source_key(self.sources)}"

    def _materialise(self) -> Path:
        """The project's build sources under the cache (written once, atomically)."""
        directory = self.directory
        if directory.is_dir():
            return directory
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=self.cache_dir))
        try:
            write_files(staging, self.sources)
            os.replace(staging, directory)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not directory.is_dir():  # not a concurrent writer that got there first
                raise
        return directory

    def library(self) -> SharedLibrary:
        if self._library is None:
            root = self._materialise()
            path = compile_cpp([root / "csim" / "bridge.cpp", root / "firmware" / f"{self.top}.cpp"], root / "build",
                               "csim", shared=True, include_dirs=[root / "firmware"])
            self._library = SharedLibrary(path)
        return self._library

    def run(self, inputs: Sequence[np.ndarray], output_shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        """Run ``batch`` samples (axis 0 of every input); returns float32 outputs of ``output_shapes``."""
        batch = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1
        arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
        outputs = [np.zeros(shape, dtype=np.float32) for shape in output_shapes]
        library = self.library()
        with self._lock:  # one run at a time per model (each holds a large stack)
            library.call(BRIDGE_SYMBOL, *arrays, *outputs, batch, stack_mib=self.stack_mib)
        return outputs
