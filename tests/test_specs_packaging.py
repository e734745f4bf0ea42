"""The top-level datasets_spec/ ships inside the package, so an installed (non-editable) oodbench has its specs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from oodbench.data.catalog import shipped_dir

ROOT = Path(__file__).resolve().parents[1]


def listed_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_directory_is_listed_in_pyproject():
    """The package list is explicit (to map datasets_spec/ in), so a new subpackage must be added to it."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "oodbench").rglob("*.py")
             if "__pycache__" not in p.parts}
    assert listed_packages() == found | {"oodbench.datasets_spec"}


def test_the_installed_package_finds_the_top_level_specs():
    assert shipped_dir().resolve() == (ROOT / "datasets_spec").resolve()


@pytest.mark.slow
def test_the_wheel_carries_every_spec_and_the_schema(tmp_path):
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("oodbench", "datasets_spec"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("oodbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = {f"oodbench/datasets_spec/{p.name}" for p in (ROOT / "datasets_spec").glob("*.toml")}
    assert len(specs) >= 6 and specs <= names
    assert "oodbench/datasets_spec/README.md" in names and "oodbench/builtin/spec_datasets.py" in names
