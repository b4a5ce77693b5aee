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

from .project import BRIDGE_SYMBOL, COUNTS_SYMBOL, write_files

#: Shape of the instrumentation tables (common.h: instrument::MAX_LAYERS x instrument::STAGES).
COUNTER_LAYERS, COUNTER_STAGES = 512, 5

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

    def __init__(self, files: Mapping[str, bytes], top: str, cache_dir: Path, stack_mib: int,
                 instrument: bool = False) -> None:
        """``instrument``: compile with -DSPARSECC_INSTRUMENT (loop counters, see common.h)."""
        self.sources = build_sources(files)
        self.top = top
        self.cache_dir = cache_dir
        self.stack_mib = stack_mib
        self.instrument = instrument
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
                               "csim-instrumented" if self.instrument else "csim", shared=True,
                               include_dirs=[root / "firmware"],
                               defines={"SPARSECC_INSTRUMENT": None} if self.instrument else None)
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

    def run_counting(self, inputs: Sequence[np.ndarray], output_shapes: Sequence[tuple[int, ...]]
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Run an instrumented build; returns the (cycles issued, entries) tables, (MAX_LAYERS, stages) each,
        summed over the batch."""
        assert self.instrument, "run_counting needs an instrumented build"
        library = self.library()
        cycles = np.zeros((COUNTER_LAYERS, COUNTER_STAGES), dtype=np.uint64)
        entries = np.zeros_like(cycles)
        with self._lock:
            library.call(COUNTS_SYMBOL, cycles, entries, 1)  # reset
            arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
            outputs = [np.zeros(shape, dtype=np.float32) for shape in output_shapes]
            batch = int(arrays[0].shape[0])
            library.call(BRIDGE_SYMBOL, *arrays, *outputs, batch, stack_mib=self.stack_mib)
            library.call(COUNTS_SYMBOL, cycles, entries, 0)
        return cycles.astype(np.float64), entries.astype(np.float64)
