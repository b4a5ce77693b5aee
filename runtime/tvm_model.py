"""Running artifacts built with TVM (the llvm and cuda targets): one shared library holding a Relax VM
executable, its constants and the kernels, loaded with the TVM runtime."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.errors import ArtifactError, DeviceUnavailableError
from .artifact import CompiledModel, Manifest, read_manifest, write_artifact
from .native_stderr import filtered_native_stderr

LIBRARY = "model.so"


def device_for(target: str) -> Any:
    """The TVM device a target runs on; raises DeviceUnavailableError when it is not present."""
    import tvm

    if target == "llvm":
        return tvm.cpu(0)
    if target == "cuda":
        dev = tvm.cuda(0)
        if not dev.exist:
            raise DeviceUnavailableError("no CUDA GPU is available on this machine (the artifact was compiled for "
                                         "cuda; run it on a machine with an NVIDIA GPU and driver)")
        return dev
    raise ArtifactError(f"target '{target}' is not run through the TVM runtime")


class TVMModel(CompiledModel):
    """A Relax VM executable plus its manifest."""

    def __init__(self, manifest: Manifest, executable: Any, library_file: Path | None = None) -> None:
        super().__init__(manifest)
        self._executable = executable  # relax.VMExecutable (fresh build) or runtime.Module (loaded)
        self._library_file = library_file
        self._vm: Any = None

    @property
    def device(self) -> Any:
        return device_for(self.manifest.target)

    def _machine(self) -> Any:
        if self._vm is None:
            from tvm import relax

            with filtered_native_stderr():
                self._vm = relax.VirtualMachine(self._executable, self.device)
        return self._vm

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        vm = self._machine()
        dev = self.device
        result = vm["main"](*(tvm.runtime.tensor(x, dev) for x in inputs))
        outs = [result] if hasattr(result, "numpy") else list(result)
        return [o.numpy() for o in outs]

    def export(self, path: str | os.PathLike[str]) -> Path:
        def write(root: Path) -> None:
            if self._library_file is not None:
                shutil.copyfile(self._library_file, root / LIBRARY)
            else:
                with filtered_native_stderr():
                    self._executable.export_library(str(root / LIBRARY))

        return write_artifact(path, self.manifest, write)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> TVMModel:
        import tvm

        manifest = read_manifest(path)
        library = Path(path) / manifest.files["library"]
        device_for(manifest.target)  # say at load time when the device is missing
        try:
            with filtered_native_stderr():
                lib = tvm.runtime.load_module(str(library))
        except Exception as exc:  # TVM raises its own error types
            raise ArtifactError(f"cannot load {library}: {str(exc).splitlines()[0]}") from None
        return TVMModel(manifest, lib, library)
