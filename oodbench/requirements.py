"""Pinned ``name==version`` lines that reproduce a set of plugins: the one installed now, or the one behind a run.

``pip install -r`` of the output installs the distributions a run used, at
the versions it used (the run directory's store records them per cell).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from oodbench.errors import UsageError
from oodbench.plugins import PluginSet, normalize_dist
from oodbench.report import open_store


def _order(dist: str) -> tuple[bool, str]:
    """oodbench itself first, then the plugin distributions by normalised name."""
    return normalize_dist(dist) != "oodbench", normalize_dist(dist)


def _pins(versions: dict[str, set[str]]) -> list[str]:
    """One line per distribution and version; a distribution seen at two versions gets a comment, since
    pip accepts only one of them."""
    lines = []
    for dist in sorted(versions, key=_order):
        lines += [f"{dist}=={version}" for version in sorted(versions[dist])]
        if len(versions[dist]) > 1:
            lines.append(f"# {dist}: cells ran with {len(versions[dist])} versions; keep one line")
    return lines


def installed_requirements(plugins: PluginSet) -> list[str]:
    """The distributions with a loaded plugin; one whose plugins all failed is listed as a comment."""
    loaded: dict[str, set[str]] = defaultdict(set)
    failed: dict[str, str] = {}
    for record in plugins.records.values():
        if record.loaded:
            loaded[record.dist].add(record.version)
        else:
            failed[record.dist] = record.version
    lines = _pins(loaded)
    lines += [f"# {dist}=={version}: installed, but none of its plugins loaded (see `oodbench plugins`)"
              for dist, version in sorted(failed.items(), key=lambda item: _order(item[0])) if dist not in loaded]
    return lines


def run_requirements(run_dir: Path) -> list[str]:
    """The distributions that took part in a run's finished cells, as its store recorded them."""
    with open_store(run_dir) as store:
        rows = store.plugin_versions()
    if not rows:
        raise UsageError(f"{run_dir}: no cell has finished yet, so no plugin versions are recorded")
    versions: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        versions[row["dist"]].add(row["version"])
    return _pins(versions)
