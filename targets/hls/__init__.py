"""The hls target: a Vitis HLS C++ project per model, C-simulated with g++.

``compile(module, ...)`` lowers the optimised IR to one call of the hand-written kernel library
(``sparsecc/runtime/hls/include/sparsecc``) per layer (:mod:`.lowering`), writes the project in memory
(:mod:`.project`: top function, per-layer configs, compressed weight headers, testbench, ``build.tcl``, README,
estimates from :mod:`.estimate`) and returns an :class:`HLSModel`. ``HLSModel.run`` C-simulates the project
(:mod:`.simulation`: the sources compiled by g++ against hls4ml's ap_types headers, one sample per call of the
top function, looped over the batch); ``HLSModel.export(path)`` writes the project directory atomically;
``load_project(path)`` runs an exported project again. Options: :mod:`.options`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsecc.compiler.errors import ArtifactError, CompileError
from sparsecc.compiler.ir.core import Module
from sparsecc.runtime.artifact import MANIFEST, CompiledModel, Manifest, make_manifest, read_manifest, write_artifact

from .estimate import estimate as estimate_design
from .lowering import Design, Lowering
from .options import HLSOptions
from .project import ProjectWriter, write_files
from .simulation import CSimulation

__all__ = ["HLSModel", "HLSOptions", "compile", "load_project"]

#: Bytes per element assumed when sizing the C-simulation stack (ap_fixed values take up to 8).
_STACK_BYTES_PER_ELEMENT = 8
#: Folders of a generated project (load_project reads these and the top-level files it writes).
PROJECT_FOLDERS = ("firmware/", "csim/", "tb_data/", "report/")
#: Temporaries of the largest layer kept on the stack by its kernel (accumulator, epilogue buffers).
_STACK_TEMPORARIES = 6


def _stack_mib(design: Design) -> int:
    sizes = [layer.output.size for layer in design.layers] or [1]
    accumulators = [int(layer.work.elements) for layer in design.layers] or [1]
    largest = max(max(sizes), max(accumulators))
    total = (sum(sizes) + _STACK_TEMPORARIES * largest) * _STACK_BYTES_PER_ELEMENT
    return max(64, math.ceil(total / 2**20) + 32)


def _check_signature(module: Module) -> None:
    for arg in module.func.args:
        if arg.type.dtype != "f32":
            raise CompileError(f"input '{arg.name}' is {arg.type.dtype}: the HLS target takes float32 inputs")
    for name, value in zip(module.func.output_names, module.func.outputs, strict=True):
        if value.type.dtype != "f32":
            raise CompileError(f"output '{name}' is {value.type.dtype}: the HLS target returns float32 outputs")


class HLSModel(CompiledModel):
    """A generated HLS project (its files in memory) that runs by C-simulation."""

    def __init__(self, manifest: Manifest, files: dict[str, bytes], options: HLSOptions) -> None:
        super().__init__(manifest)
        self.files = files
        self.options = options
        self.top = Path(manifest.files["top"]).stem
        self._simulation = CSimulation(files, self.top, options.cache_dir, options.csim_stack_mib or 256)

    def source(self, relative: str) -> str:
        """The text of one project file, e.g. ``source('firmware/gsc_sparse_cnn.cpp')``."""
        if relative not in self.files:
            raise ArtifactError(f"the project has no file {relative}; files: {', '.join(sorted(self.files))}")
        return self.files[relative].decode()

    def build(self) -> Path:
        """Compile the C-simulation now (it is built on first run otherwise); returns the library path."""
        return self._simulation.library().path

    def _execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        batch = int(inputs[0].shape[0])
        shapes = [tuple(batch if d is None else d for d in spec.shape) for spec in self.manifest.outputs]
        return self._simulation.run(inputs, shapes)  # type: ignore[arg-type]

    def export(self, path: str | os.PathLike[str]) -> Path:
        return write_artifact(path, self.manifest, lambda root: write_files(root, self.files))


def compile(module: Module, *, pipeline: str, batch: int | None, progress: Callable[[str], None] | None = None,
            **options: Any) -> HLSModel:
    """Generate the HLS project of an optimised module; returns a model that C-simulates it."""
    from sparsecc import __version__

    parsed = HLSOptions.from_options(options)
    _check_signature(module)
    design = Lowering(module, parsed).run()
    if parsed.csim_stack_mib is None:
        parsed = dataclasses.replace(parsed, csim_stack_mib=_stack_mib(design))
        design.options = parsed
    if progress:
        progress(f"hls: {len(design.layers)} layer calls; writing the project ({parsed.precision}, "
                 f"{parsed.interface} interface)")
    writer = ProjectWriter(design, module, pipeline, __version__)
    files = writer.files(estimate_design(design))
    top = design.top
    roles = {"top": f"firmware/{top}.cpp", "header": f"firmware/{top}.h", "bridge": "csim/bridge.cpp",
             "testbench": f"{top}_test.cpp", "build_script": "build.tcl", "estimate": "report/estimate.json",
             "readme": "README.md"}
    manifest = make_manifest(module, "hls", pipeline, batch, roles, parsed.to_json())
    return HLSModel(manifest, files, parsed)


def load_project(path: str | os.PathLike[str]) -> HLSModel:
    """An exported HLS project as a runnable model (C-simulation of its files)."""
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.target != "hls":
        raise ArtifactError(f"{root} was compiled for '{manifest.target}', not hls")
    try:
        options = HLSOptions.from_options(dict(manifest.target_options))
    except CompileError as error:
        raise ArtifactError(f"{root / MANIFEST} has bad hls options: {error}") from None
    top = Path(manifest.files["top"]).stem
    files = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).as_posix()
        if file.is_file() and _project_file(relative, top):
            files[relative] = file.read_bytes()
    return HLSModel(manifest, files, options)


def _project_file(relative: str, top: str) -> bool:
    """Whether a file belongs to the generated project (not to a Vitis run or a local build in it)."""
    if relative.startswith(PROJECT_FOLDERS):
        return True
    return relative in ("README.md", "build.tcl", f"{top}_test.cpp")
