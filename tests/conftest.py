"""Shared fixtures."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from cli_support import subprocess_env
from oodbench.plugins import LOAD_PLUGINS_ENV, PluginSet, get_plugins, reset_plugins


class FakeSite:
    """A directory that looks like site-packages: ``*.dist-info`` folders plus plugin modules.

    ``importlib.metadata`` finds the distributions for real once the directory
    is on ``sys.path`` (in process) or on ``PYTHONPATH`` (for the CLI).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add_dist(self, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None,
                 version: str = "1.0.0") -> Path:
        """Install ``dist``: its ``[oodbench]`` entry points (name -> module) and the modules' sources."""
        info = self.root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = ["[oodbench]", *(f"{name} = {target}" for name, target in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            sys.modules.pop(module, None)
            self.modules.append(module)
        return info

    def load(self) -> PluginSet:
        """The process-wide plugin set, loaded afresh from the current environment."""
        importlib.invalidate_caches()  # also clears importlib.metadata's path cache
        reset_plugins()
        return get_plugins()

    def env(self, **overrides: str | None) -> dict[str, str]:
        """``os.environ`` for a CLI subprocess that sees this site; ``None`` removes a variable."""
        pythonpath = os.pathsep.join([str(self.root), *filter(None, [os.environ.get("PYTHONPATH")])])
        return subprocess_env(**({"PYTHONPATH": pythonpath} | overrides))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty fake site on ``sys.path``, with ``OODBENCH_LOAD_PLUGINS`` unset and the plugin set reset
    before and after, so other tests see the real environment again."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    reset_plugins()
    site = FakeSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)
    reset_plugins()
