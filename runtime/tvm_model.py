"""Running artifacts built with TVM (the llvm and cuda targets): one shared library holding a Relax VM
executable, its constants and the kernels, loaded with the TVM runtime."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import ArtifactError, DeviceUnavailableError
from .artifact import MANIFEST, CompiledModel, Manifest, read_manifest, write_artifact
from .host import cannot_execute
from .native_stderr import filtered_native_stderr

LIBRARY = "model.so"
SOURCE_DIR = "source"


def device_for(target: str) -> Any:
    """The TVM device a target runs on; raises DeviceUnavailableError when it is not present."""
    import tvm

    if target == "llvm":
        return tvm.cpu(0)
    if target == "cuda":
        from .cuda import cuda_device

        return cuda_device()  # raises DeviceUnavailableError naming what is missing (driver, GPU, CUDA runtime)
    raise ArtifactError(f"target '{target}' is not run through the TVM runtime")


class TVMModel(CompiledModel):
    """A Relax VM executable plus its manifest and, on request, the generated source (``--emit-source``)."""

    def __init__(self, manifest: Manifest, executable: Any, library_file: Path | None = None,
                 sources: dict[str, str] | None = None, not_here: str | None = None) -> None:
        super().__init__(manifest)
        self._executable = executable  # relax.VMExecutable (fresh build), runtime.Module (loaded), or None
        self._library_file = library_file
        self._not_here = not_here  # why this host cannot run it (code for another CPU), when executable is None
        self._vm: Any = None
        self.sources = dict(sources or {})  # file name -> generated source text
        self._emit_source: Path | None = None
        self._main: Any = None  # the VM's main function, looked up once (a lookup costs ~25 us)
        self._inputs: dict[int, Any] = {}  # per input, a reusable device buffer (of the last shape seen)
        self._lock = threading.Lock()  # the VM keeps state between instructions: one call at a time

    @property
    def device(self) -> Any:
        return device_for(self.manifest.target)

    def _machine(self) -> Any:
        if self._executable is None:
            raise ArtifactError(f"this model cannot run on this host: {self._not_here or 'it was not loaded'}")
        if self._vm is None:
            from tvm import relax

            with filtered_native_stderr():
                self._vm = relax.VirtualMachine(self._executable, self.device)
        return self._vm

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        with self._lock:
            if self._main is None:
                self._main = self._machine()["main"]
            dev = self.device
            args = []
            for i, x in enumerate(inputs):
                # copy into a reused, aligned device buffer: the kernels assume TVM's 64-byte alignment,
                # which a numpy array passed without a copy need not have
                buffer = self._inputs.get(i)
                if buffer is None or tuple(buffer.shape) != x.shape:
                    buffer = self._inputs[i] = tvm.runtime.empty(x.shape, str(x.dtype), dev)
                buffer.copyfrom(x)
                args.append(buffer)
            result = self._main(*args)
            outs = [result] if hasattr(result, "numpy") else list(result)
            return [o.numpy() for o in outs]

    # -- generated source -----------------------------------------------------------------------------------
    def write_sources(self, directory: Path) -> list[Path]:
        """Write the generated source files into ``directory`` (created)."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.sources.items():
            (directory / name).write_text(text)
            written.append(directory / name)
        return written

    def request_sources(self, where: str | os.PathLike[str]) -> None:
        """``--emit-source``: write the sources to ``where/source/``. When ``where`` is (or will be) the
        artifact directory, they are written inside the artifact when it is exported; a plain non-empty
        folder gets them now."""
        directory = Path(where)
        if directory.is_dir() and any(directory.iterdir()) and not (directory / MANIFEST).exists():
            self.write_sources(directory / SOURCE_DIR)
        else:
            self._emit_source = directory

    # -- export ---------------------------------------------------------------------------------------------
    def _write_library(self, file: Path) -> None:
        if self._library_file is not None:
            shutil.copyfile(self._library_file, file)
        else:
            with filtered_native_stderr():
                self._executable.export_library(str(file))

    def export(self, path: str | os.PathLike[str]) -> Path:
        dest = Path(path)
        inside = self._emit_source is not None and os.path.abspath(self._emit_source) == os.path.abspath(dest)
        if self._emit_source is not None and not inside:
            self.write_sources(self._emit_source / SOURCE_DIR)

        def write(root: Path) -> None:
            self._write_library(root / LIBRARY)
            if inside:
                self.write_sources(root / SOURCE_DIR)

        return write_artifact(dest, self.manifest, write)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> TVMModel:
        manifest = read_manifest(path)
        library = Path(path) / manifest.files["library"]
        if manifest.target == "llvm":
            problem = cannot_execute(manifest.target_options)
            if problem:
                raise ArtifactError(f"cannot load {path}: {problem}")
        dev = device_for(manifest.target)  # say at load time when the device is missing
        if manifest.target == "cuda":
            from .cuda import check_architecture

            problem = check_architecture(dev, list(manifest.target_options.get("archs", [])))
            if problem:
                raise DeviceUnavailableError(problem)
        return TVMModel(manifest, load_library(library), library)


def load_library(library: Path) -> Any:
    """Load a compiled shared library with the TVM runtime."""
    import tvm

    try:
        with filtered_native_stderr():
            return tvm.runtime.load_module(str(library))
    except Exception as exc:  # TVM raises its own error types
        raise ArtifactError(f"cannot load {library}: {str(exc).splitlines()[0]}") from None
