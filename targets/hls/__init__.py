"""The hls target: a Vitis HLS C++ project per model, C-simulated with g++.

``compile(module, ...)`` lowers the optimised IR to one call of the hand-written kernel library
(``sparsecc/runtime/hls/include/sparsecc``) per layer (:mod:`.lowering`), chooses the lanes of every layer
(:mod:`.parallelism`; written into the layer configs, read back by :mod:`.estimate`), writes the project in
memory (:mod:`.project`: top function, per-layer configs, compressed weight headers, testbench, ``build.tcl``,
README, estimates of the design and of its dense twin) and returns an :class:`HLSModel`. ``HLSModel.run``
C-simulates the project (:mod:`.simulation`: the sources compiled by g++ against hls4ml's ap_types headers);
``HLSModel.profile(feeds)`` runs the instrumented C-simulation (loop counters) next to the estimate;
``HLSModel.export(path)`` writes the project directory atomically, with the testbench's bit-exact expectation
from a C-simulation run; ``load_project(path, csim_cache=...)`` runs an exported project again (a manifest never
chooses the build directory). Options: :mod:`.options`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsecc.compiler.errors import ArtifactError, CompileError
from sparsecc.compiler.ir.core import Module
from sparsecc.runtime.artifact import MANIFEST, CompiledModel, Manifest, make_manifest, read_manifest, write_artifact

from ..finite_constants import refuse_non_finite_layers
from .design import Design
from .estimate import estimate as estimate_design
from .estimate import measured_stage_cycles, profile_markdown, stage_cycles
from .loops import STAGES
from .lowering import Lowering
from .options import HLSOptions
from .parallelism import allowed, choose_lanes, fits
from .project import ProjectWriter, testbench_lines, write_files
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
    accumulators = [max(layer.loops.outputs, layer.loops.inputs * (layer.lanes + 1) // 2) for layer in design.layers]
    accumulators = accumulators or [1]
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

    def __init__(self, manifest: Manifest, files: dict[str, bytes], options: HLSOptions,
                 design: Design | None = None) -> None:
        super().__init__(manifest)
        self.files = files
        self.options = options
        self.design = design  # the lowered design (None for a loaded project)
        self.top = Path(manifest.files["top"]).stem
        stack = options.csim_stack_mib or 256
        self._simulation = CSimulation(files, self.top, options.cache_dir, stack)
        self._instrumented = CSimulation(files, self.top, options.cache_dir, stack, instrument=True)
        self._profile: dict[str, Any] | None = None

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

    def golden_outputs(self) -> str:
        """The C-simulation's outputs on the testbench inputs (``tb_data/tb_input_features.dat``), one sample a
        line: the bit-exact expectation the testbench compares with."""
        rows = np.loadtxt(self.files["tb_data/tb_input_features.dat"].decode().splitlines(), dtype=np.float32,
                          ndmin=2)
        feeds, offset = [], 0
        for spec in self.manifest.inputs:
            size = int(np.prod([d for d in spec.shape[1:]]))
            feeds.append(rows[:, offset:offset + size].reshape((rows.shape[0], *spec.shape[1:])))
            offset += size
        return testbench_lines(self._execute(feeds), rows.shape[0])

    def project_files(self) -> dict[str, bytes]:
        """The project's files with the testbench expectation from a C-simulation run (built on demand), and
        ``report/profile.{json,md}`` when :meth:`profile` was run on this model."""
        files = {**self.files, "tb_data/tb_output_predictions.dat": self.golden_outputs().encode()}
        if self._profile is not None:
            files["report/profile.json"] = (json.dumps(self._profile, indent=1) + "\n").encode()
            files["report/profile.md"] = profile_markdown(self._profile).encode()
        return files

    def export(self, path: str | os.PathLike[str]) -> Path:
        files = self.project_files()
        return write_artifact(path, self.manifest, lambda root: write_files(root, files))

    def profile(self, feeds: dict[str, np.ndarray] | list[np.ndarray]) -> dict[str, Any]:
        """Instrumented C-simulation on ``feeds``: per layer, the cycles each stage's pipelined loops issued
        (sum of their II) and their entries, averaged per sample, turned into cycles with the pipeline depths
        of the estimate; next to the estimate's cycles for the same layer."""
        if self.design is None:
            raise ArtifactError("profile needs the compiled design (compile the model; a loaded project has none)")
        arrays = list(feeds.values()) if isinstance(feeds, dict) else list(feeds)
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        batch = int(arrays[0].shape[0])
        shapes = [tuple(batch if d is None else d for d in spec.shape) for spec in self.manifest.outputs]
        counts = self._instrumented.run_counting(arrays, shapes)
        layers = []
        for layer in self.design.layers:
            measured = {stage: (counts[0][layer.index][s] / batch, counts[1][layer.index][s] / batch)
                        for s, stage in enumerate(STAGES)}
            estimated = stage_cycles(layer)
            actual = measured_stage_cycles(layer, measured)
            layers.append({"index": layer.index + 1, "name": layer.name, "lanes": layer.lanes,
                           "estimate": estimated, "measured": actual,
                           "estimate_interval": max(estimated.values(), default=1),
                           "measured_interval": max(actual.values(), default=1),
                           "estimate_latency": sum(estimated.values()), "measured_latency": sum(actual.values())})
        self._profile = {"model": self.design.model, "samples": batch, "layers": layers,
                         "estimate_interval": max(x["estimate_interval"] for x in layers),
                         "measured_interval": max(x["measured_interval"] for x in layers),
                         "estimate_latency": sum(x["estimate_latency"] for x in layers),
                         "measured_latency": sum(x["measured_latency"] for x in layers)}
        return self._profile


def compile(module: Module, *, pipeline: str, batch: int | None, progress: Callable[[str], None] | None = None,
            **options: Any) -> HLSModel:
    """Generate the HLS project of an optimised module; returns a model that C-simulates it."""
    from sparsecc import __version__

    parsed = HLSOptions.from_options(options)
    _check_signature(module)
    refuse_non_finite_layers(module, "hls")  # the sparse kernels would lose 0 * inf of an infinite weight
    design = _lower(module, parsed, parsed.dense)
    twin = _lower(module, parsed, True) if not parsed.dense and design.layers else None
    if parsed.csim_stack_mib is None:
        parsed = dataclasses.replace(parsed, csim_stack_mib=_stack_mib(design))
        design.options = parsed
    if progress:
        progress(f"hls: {len(design.layers)} layer calls; writing the project ({parsed.precision}, "
                 f"{parsed.interface} interface)")
    writer = ProjectWriter(design, module, pipeline, __version__)
    files = writer.files(estimate_design(design, twin))
    top = design.top
    roles = {"top": f"firmware/{top}.cpp", "header": f"firmware/{top}.h", "bridge": "csim/bridge.cpp",
             "testbench": f"{top}_test.cpp", "build_script": "build.tcl", "estimate": "report/estimate.json",
             "readme": "README.md"}
    manifest = make_manifest(module, "hls", pipeline, batch, roles, parsed.to_json())
    return HLSModel(manifest, files, parsed, design)


def _lower(module: Module, options: HLSOptions, dense: bool) -> Design:
    """The design with the lanes of the options' policy. With a budget or a target rate, the sparse-sparse
    layers are also tried as ELL gathers (which parallelise without a per-tap iteration): the design with the
    shorter estimated interval that fits is generated."""
    design = _lower_with(module, options, dense, frozenset())
    if dense or (options.budget is None and options.target_fps is None):
        return design
    scatter = frozenset(layer.name for layer in design.layers if layer.loops.kind == "scatter")
    if not scatter:
        return design
    try:
        gathered = _lower_with(module, options, dense, scatter)
    except CompileError:  # e.g. the target rate is out of reach this way
        return design
    if options.budget is not None and not fits(gathered, options.budget):
        return design
    return gathered if _interval(gathered) < _interval(design) else design


def _interval(design: Design) -> int:
    return max((max(stage_cycles(layer).values(), default=1) for layer in design.layers), default=1)


def _lower_with(module: Module, options: HLSOptions, dense: bool, gather: frozenset[str]) -> Design:
    """Lower at one lane, choose the lanes (parallelism.py), lower again with them when they differ. With a
    resource budget the lowered design is checked against the part; while it does not fit, the layer with the
    most lanes steps down (the choice estimates other lanes from the one-lane lowering)."""
    base = Lowering(module, options, dense=dense, gather=gather).run()
    lanes = choose_lanes(base, options)
    if all(value == 1 for value in lanes.values()):
        return base
    design = Lowering(module, options, lanes, dense=dense, gather=gather).run()
    while options.budget is not None and not fits(design, options.budget):
        widest = max(design.layers, key=lambda layer: layer.lanes)
        if widest.lanes == 1:
            break
        smaller = [c for c in allowed(widest) if c < widest.lanes]
        lanes[widest.name] = smaller[-1]
        design = Lowering(module, options, lanes, dense=dense, gather=gather).run()
    return design


#: Options a manifest may not carry: where the project is built is the caller's choice, not the artifact's.
RUNTIME_OPTIONS = ("csim_cache",)


def load_project(path: str | os.PathLike[str], *, csim_cache: str | os.PathLike[str] | None = None) -> HLSModel:
    """An exported HLS project as a runnable model (C-simulation of its files), built under ``csim_cache``
    (default: the user's cache, :func:`.options.default_cache_dir`)."""
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.target != "hls":
        raise ArtifactError(f"{root} was compiled for '{manifest.target}', not hls")
    foreign = sorted(set(manifest.target_options) & set(RUNTIME_OPTIONS))
    if foreign:
        raise ArtifactError(f"{root / MANIFEST} sets {', '.join(foreign)}: a manifest does not choose where a "
                            "project is built")
    try:
        options = HLSOptions.from_options(dict(manifest.target_options))
    except CompileError as error:
        raise ArtifactError(f"{root / MANIFEST} has bad hls options: {error}") from None
    if csim_cache is not None:
        options = dataclasses.replace(options, csim_cache=Path(csim_cache))
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
