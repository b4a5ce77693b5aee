"""Running artifacts built with TVM (the llvm and cuda targets): one shared library holding a Relax VM
executable, its constants and the kernels, loaded with the TVM runtime."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import ArtifactError, DeviceUnavailableError
from .artifact import MANIFEST, CompiledModel, Manifest, check_output_path, read_manifest, write_artifact
from .artifact_files import verify_file
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

    def __init__(self, manifest: Manifest, executable: Any, library_file: Path | bytes | None = None,
                 sources: dict[str, str] | None = None, not_here: str | None = None) -> None:
        super().__init__(manifest)
        self._executable = executable  # relax.VMExecutable (fresh build), runtime.Module (loaded), or None
        # the library this model runs and exports: the bytes read (and verified) at load, or the file of a
        # fresh build in the model's own build directory
        self._library = library_file
        self._not_here = not_here  # why this host cannot run it (code for another CPU), when executable is None
        self._vm: Any = None
        self.sources = dict(sources or {})  # file name -> generated source text
        self._emit_source: Path | None = None
        self._main: Any = None  # the VM's main function, looked up once (see _start)
        # per input, a reusable device buffer for the last shape seen: (shape, buffer, numpy view on the host)
        self._inputs: dict[int, tuple[tuple[int, ...], Any, np.ndarray | None]] = {}
        self._dev: Any = None
        self._on_host = True
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
        # Every run passes through here, and its Python time counts about twice at batch 1 (GSCSparseCNN: each
        # microsecond of interpreter work between two runs slows the kernels by about another one), so the
        # set-up is done once and the per-run path only copies in, calls and copies out.
        with self._lock:
            if self._main is None:
                self._start()
            args = []
            for i, x in enumerate(inputs):
                # copy into a reused, aligned device buffer: the kernels assume TVM's 64-byte alignment,
                # which a numpy array passed without a copy need not have
                entry = self._inputs.get(i)
                if entry is None or entry[0] != x.shape:
                    entry = self._inputs[i] = self._input_buffer(x)
                _, buffer, view = entry
                if view is not None:  # on the host, through a kept numpy view (DLPack): no ctypes per copy
                    np.copyto(view, x)
                else:
                    buffer.copyfrom(x)
                args.append(buffer)
            try:
                result = self._main(*args)
            except Exception as exc:  # TVM checks arguments against the compiled signature
                raise ArtifactError("the compiled module rejected its inputs (does the manifest match the library?): "
                                    f"{_first_line(exc)}") from None
            outs = [result] if hasattr(result, "numpy") else list(result)
            if len(outs) != len(self.manifest.outputs):
                raise ArtifactError(f"the compiled module returned {len(outs)} output(s), the manifest lists "
                                    f"{len(self.manifest.outputs)}")
            # copies: the VM reuses its buffers on the next run
            return [np.from_dlpack(o).copy() if self._on_host else o.numpy() for o in outs]

    def _start(self) -> None:
        """First run: the VM, its main function (a lookup costs ~25 us) and the device, once."""
        import tvm

        self._main = self._machine()["main"]
        self._dev = self.device
        self._on_host = self._dev.dlpack_device_type() == tvm.cpu().dlpack_device_type()

    def _input_buffer(self, x: np.ndarray) -> tuple[tuple[int, ...], Any, np.ndarray | None]:
        """(shape, device buffer, numpy view of the buffer on the host) for inputs shaped like ``x``."""
        import tvm

        buffer = tvm.runtime.empty(x.shape, str(x.dtype), self._dev)
        return x.shape, buffer, np.from_dlpack(buffer) if self._on_host else None

    # -- generated source -----------------------------------------------------------------------------------
    def write_sources(self, directory: Path) -> list[Path]:
        """Write the generated source files into ``directory`` (created). An existing file with other
        content is not overwritten: ArtifactError before anything is written."""
        clashes = [name for name, text in self.sources.items()
                   if (directory / name).is_symlink() or ((directory / name).exists()
                                                          and (directory / name).read_bytes() != text.encode())]
        if clashes:
            raise ArtifactError(f"{directory} already holds {', '.join(clashes)}; refusing to overwrite it")
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.sources.items():
            (directory / name).write_text(text)
            written.append(directory / name)
        return written

    def request_sources(self, where: str | os.PathLike[str]) -> None:
        """``emit_source``: write the sources to ``where/source/``. When ``where`` is (or will be) the
        artifact directory, they are written inside the artifact when it is exported; a plain non-empty
        folder gets them now (never overwriting a different file); an existing artifact elsewhere is refused."""
        directory = Path(where)
        if (directory / MANIFEST).exists():
            check_output_path(directory)  # an artifact: only ever replaced whole, at export
            self._emit_source = directory
        elif directory.is_dir() and any(directory.iterdir()):
            self.write_sources(directory / SOURCE_DIR)
        else:
            self._emit_source = directory

    # -- export ---------------------------------------------------------------------------------------------
    def _write_library(self, file: Path) -> None:
        if isinstance(self._library, bytes):
            file.write_bytes(self._library)
        elif self._library is not None:
            shutil.copyfile(self._library, file)
        else:
            with filtered_native_stderr():
                self._executable.export_library(str(file))

    def export(self, path: str | os.PathLike[str]) -> Path:
        if not isinstance(path, str | os.PathLike):
            raise ArtifactError(f"the output path must be a str or os.PathLike, got {type(path).__name__}")
        dest = Path(path)
        if self._emit_source is not None:
            check_output_path(dest)  # before the sources are written
        inside = self._emit_source is not None and os.path.abspath(self._emit_source) == os.path.abspath(dest)
        if self._emit_source is not None and not inside:
            if (self._emit_source / MANIFEST).exists():
                raise ArtifactError(f"emit_source {self._emit_source} is another artifact; sources go into the "
                                    "artifact being exported or into a plain folder")
            self.write_sources(self._emit_source / SOURCE_DIR)

        def write(root: Path) -> None:
            self._write_library(root / LIBRARY)
            if inside:
                self.write_sources(root / SOURCE_DIR)

        return write_artifact(dest, self.manifest, write)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> TVMModel:
        """Load an llvm/cuda artifact. The library is read once, checked against the manifest's size and
        SHA-256, and loaded from a private copy: the model owns those bytes (a later change of ``path`` does
        not affect it, and ``export`` writes exactly what runs)."""
        root = Path(path)
        manifest = read_manifest(root, verify=False)
        if manifest.target not in ("llvm", "cuda"):
            raise ArtifactError(f"{root} was compiled for '{manifest.target}', not llvm or cuda")
        name = manifest.files.get("library")
        if name is None:
            raise ArtifactError(f"{root / MANIFEST} names no library file")
        for other, entry in manifest.contents.items():
            if other != name:
                verify_file(root, other, entry)
        library = verify_file(root, name, manifest.contents[name])
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
        with tempfile.TemporaryDirectory(prefix="sparsecc-load-") as scratch:
            private = Path(scratch) / LIBRARY
            private.write_bytes(library)
            try:
                lib = load_library(private)
            except ArtifactError as error:
                raise ArtifactError(str(error).replace(str(private), str(root / name))) from None
        return TVMModel(manifest, lib, library)


def load_library(library: Path) -> Any:
    """Load a compiled shared library with the TVM runtime."""
    import tvm

    try:
        with filtered_native_stderr():
            return tvm.runtime.load_module(str(library))
    except Exception as exc:  # TVM raises its own error types
        raise ArtifactError(f"cannot load {library}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
