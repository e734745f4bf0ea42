"""Shared fixtures."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from cli_support import FIRST_PARTY, subprocess_env
from oodbench.plugins import LOAD_PLUGINS_ENV, PluginSet, get_plugins, reset_plugins


def pytest_configure(config: pytest.Config) -> None:
    """The suite loads only oodbench's own plugin distributions, whatever else the environment holds.

    Under pytest-xdist (``make test`` runs two workers on two cores) each worker, and every process it starts,
    computes on one thread: two workers with two threads each would fight over the cores.
    """
    os.environ[LOAD_PLUGINS_ENV] = FIRST_PARTY
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with the most ``slow`` tests first, so pytest-xdist (which hands out whole files in this order) does
    not start a minutes-long file last while the other worker sits idle; order within a file is kept."""
    def file(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    slow = Counter(file(item) for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[file(item)])


class FakeSite:
    """A directory that looks like site-packages: ``*.dist-info`` folders plus plugin modules.

    ``importlib.metadata`` finds the distributions for real once the directory
    is on ``sys.path`` (in process) or on ``PYTHONPATH`` (for the CLI).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []
        self.selection = FIRST_PARTY
        """What the site puts in ``OODBENCH_LOAD_PLUGINS``: the first-party plugins and every dist it adds."""

    def add_dist(self, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None,
                 version: str = "1.0.0") -> Path:
        """Install ``dist``: its ``[oodbench]`` entry points (name -> module) and the modules' sources."""
        if os.environ.get(LOAD_PLUGINS_ENV) == self.selection:  # unless a test chose its own selection
            self.selection = f"{self.selection},{dist}"
            os.environ[LOAD_PLUGINS_ENV] = self.selection
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
        selection = {LOAD_PLUGINS_ENV: os.environ.get(LOAD_PLUGINS_ENV)}
        return subprocess_env(**({"PYTHONPATH": pythonpath} | selection | overrides))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty fake site on ``sys.path``, ``OODBENCH_LOAD_PLUGINS`` naming the first-party plugins and each
    dist the test adds, and the plugin set reset before and after, so other tests see the real environment."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv(LOAD_PLUGINS_ENV, FIRST_PARTY)
    reset_plugins()
    site = FakeSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)
    reset_plugins()
