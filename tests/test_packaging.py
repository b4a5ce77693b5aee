"""Packaging: every package folder ships as a sparsecc sub-package and nothing generic leaks to site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_folders() -> set[str]:
    found = {"sparsecc"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if any(p.startswith(".") for p in rel.parts) or (rel.parts and rel.parts[0] in ("tests", "build")):
            continue
        if rel.parts:
            found.add("sparsecc." + ".".join(rel.parts))
    return found


def test_pyproject_lists_every_package_folder() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert declared == package_folders()


def test_wheel_holds_only_the_sparsecc_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("sparsecc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"sparsecc", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "sparsecc/runtime/hls/include/sparsecc/kwta.h" in names  # kernel headers ship as package data
    assert not any(n.startswith("sparsecc/tests/") for n in names)
