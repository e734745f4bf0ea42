"""The layering the light core promises, read from the source and checked in a fresh interpreter: no import
cycles, the core never imports a first-party plugin, plugins import only ``oodbench.api`` and
``oodbench.hookimpl``, and the commands that only read (report, leaderboard, plugins --requirements, --help)
import neither torch nor any plugin."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from cli_support import subprocess_env
from store_support import one_finished_cell

import oodbench

ROOT = Path(oodbench.__file__).parent
PLUGIN_PACKAGES = sorted(p for p in (ROOT.parent / "plugins").glob("*/oodbench_*") if p.is_dir())
READING = ("oodbench.report", "oodbench.render", "oodbench.html_report", "oodbench.plots", "oodbench.store",
           "oodbench.selection", "oodbench.leaderboard", "oodbench.requirements", "oodbench.directions")
HEAVY = ("torch", "torchvision", "snntorch", "memtorch", "ray", "oodbench_methods", "oodbench_snn",
         "oodbench_memristor")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module an ``import`` anywhere in the file names (functions included), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def _core_graph() -> dict[str, set[str]]:
    modules = {_module_name(p, ROOT): p for p in ROOT.rglob("*.py")}
    return {name: _imports(path) for name, path in modules.items()}


def test_the_core_has_no_import_cycle():
    graph = _core_graph()
    edges = {name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()}
    state: dict[str, str] = {}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_the_core_never_imports_a_first_party_plugin():
    offenders = {name: sorted(t for t in targets if t.split(".")[0] in HEAVY[5:])
                 for name, targets in _core_graph().items()}
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda p: p.name)
def test_plugins_import_only_the_api_and_hookimpl_from_oodbench(package):
    allowed = {"oodbench", "oodbench.api", "oodbench.hookimpl"}
    offenders = {}
    for path in package.rglob("*.py"):
        used = {t for t in _imports(path) if t.split(".")[0] == "oodbench"}
        used -= {t for t in used if t.startswith("oodbench.api.")}
        if used - allowed:
            offenders[str(path.relative_to(package.parent))] = sorted(used - allowed)
    assert not offenders


def test_the_reading_layer_never_imports_torch_or_a_plugin():
    graph = _core_graph()
    seen, todo = set(), list(READING)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [t for t in graph.get(name, ()) if t in graph]
    reached = {t.split(".")[0] for name in seen for t in graph[name]}
    assert not reached & set(HEAVY), sorted(reached & set(HEAVY))
    assert not seen & {"oodbench.api", "oodbench.train", "oodbench.runner"}, sorted(seen)


PROBE = """
import json, sys
from oodbench.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exit:  # --help
        codes.append(exit.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
print(json.dumps({"codes": codes, "heavy": heavy, "api": "oodbench.api" in sys.modules}))
"""


def test_reading_commands_import_neither_torch_nor_plugins(tmp_path):
    run_dir = one_finished_cell(tmp_path / "run")
    baseline = ROOT / "leaderboards" / "guard.json"
    commands = [["report", str(run_dir), "--format", fmt] for fmt in ("table", "markdown", "latex", "json", "csv")]
    commands += [["leaderboard", "check", str(run_dir), "--baseline", str(baseline)],
                 ["plugins", "--requirements", str(run_dir)], ["report", "--help"]]
    probe = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(HEAVY)],
                           env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["codes"] == [0, 0, 0, 0, 0, 1, 0, 0]  # the empty run misses every baseline entry: check fails
    assert seen["heavy"] == [] and not seen["api"], seen


def test_listing_plugins_imports_neither_torchvision_nor_memtorch():
    """``list`` imports every plugin module, but not what only training needs:
    torchvision costs 1.7 s (it loads torch._dynamo) and memtorch 6.4 s, so a module-level import of either in a
    plugin shows up here."""
    commands = [["list", "algorithms"], ["list", "targets"], ["list", "backbones"]]
    probe = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(["torchvision", "memtorch"])],
                           env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["codes"] == [0, 0, 0] and seen["heavy"] == [], seen
