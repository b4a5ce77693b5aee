"""Shared fixtures (zoo models exported to ONNX once per test session) and the parallel schedule.

``make test`` runs the suite with pytest-xdist (``-n logical --dist loadgroup``). Tests that share an expensive
module- or session-scoped fixture of this suite are put in one ``xdist_group`` (their module) so that the
fixture is built once, by one worker; a test module may name finer groups itself (``test_cuda.py``: one group
per zoo model's CUDA build). Under xdist the units of work are queued heaviest first (``SLOW_FIRST``), so that
the long compiles start at once and the short tests fill the gaps. A run without ``-n`` keeps pytest's order.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from sparsecc.examples.models import zoo

#: session fixtures cheap enough to build once per worker (they never put their tests in one group)
SHARED_CHEAP = {"zoo_dir", "zoo_onnx"}

#: Units of work (a test id, or an ``xdist_group`` name) that take longest, with rough CPU seconds (process and
#: children, 2-core AVX2 machine, December 2026; hls, kwta_forms and evaluate are estimates). Only the order
#: matters: the first pattern that matches a unit gives its weight. Patterns use fnmatch (``*``, ``[[]``).
SLOW_FIRST: dict[str, float] = {
    "tests/test_llvm.py::test_check_passes_on_every_zoo_model[[]cifar_vgg19_sparse[]]": 90,
    "tests/test_aarch64.py": 80,  # 35 s of CPU, but over a minute of wall time: the emulator boots
    "tests/test_llvm.py::test_check_passes_on_every_zoo_model[[]cifar_notsodensenet[]]": 70,
    "cuda-cifar_*": 55,
    "tests/test_kwta_forms.py": 50,
    "tests/test_hls_target.py": 45,
    "tests/test_hls_kernels.py": 40,
    "tests/test_evaluate.py": 40,
    "tests/test_llvm.py::test_check_passes_on_every_zoo_model[[]cifar_*": 32,
    "cuda-gsc_*": 30,
    "tests/test_llvm.py::test_check_passes_on_every_zoo_model*": 20,
}


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the zoo exports live: one folder per test session, shared by the xdist workers of the session."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's basetemp sits in the session's own temporary folder
    path = root / "zoo"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def zoo_onnx(zoo_dir: Path) -> Callable[[str], Path]:
    """``zoo_onnx(name)`` -> path of the model's ONNX export (exported once per session, by one worker)."""
    exported: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in exported:
            path = zoo_dir / f"{name}.onnx"
            with FileLock(str(path) + ".lock"):
                if not path.is_file():
                    partial = zoo_dir / f".{name}.{os.getpid()}.onnx"
                    zoo.export(name, partial, seed=0)
                    os.replace(partial, path)
            exported[name] = path
        return exported[name]

    return get


def _shared_fixtures(item: pytest.Item) -> list[str]:
    """The suite's own module/session-scoped fixtures an item uses (directly or through other fixtures)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    names = []
    for name, defs in info.name2fixturedefs.items():
        definition = defs[-1]
        if definition.scope != "function" and definition.baseid and name not in SHARED_CHEAP:
            names.append(name)
    return names


def _name_groups(items: list[pytest.Item]) -> None:
    """Append ``@GROUP`` to the node id of every grouped item, as xdist's loadgroup means to: with pytest 9.2,
    xdist 3.8 writes the suffix to an attribute pytest no longer reads, so every group would be split silently
    (pytest-dev/pytest-xdist#1386). Without the suffix the scheduler treats each test as its own unit."""
    from _pytest.nodeid import NodeId

    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None and not item.nodeid.endswith(f"@{mark.args[0]}"):
            item._id = NodeId.parse(f"{item.nodeid}@{mark.args[0]}")


def _weight(unit: str) -> float:
    return next((seconds for pattern, seconds in SLOW_FIRST.items() if fnmatch.fnmatchcase(unit, pattern)), 0.0)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Group the item with its module when it uses one of the module's shared fixtures (before xdist reads the
    groups in pytest_collection_modifyitems)."""
    if item.get_closest_marker("xdist_group") is None and _shared_fixtures(item):
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' collection order is the order of the queue
        return
    if getattr(config.option, "loadgroup", False):
        _name_groups(items)
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        units.setdefault(mark.args[0] if mark else item.nodeid, []).append(item)
    order = sorted(units, key=lambda unit: -max(_weight(unit), *(_weight(i.nodeid) for i in units[unit])))
    items[:] = [item for unit in order for item in units[unit]]
