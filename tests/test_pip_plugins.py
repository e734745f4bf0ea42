"""Plugin distributions installed with real pip, as a stranger's would be: listed with version, target and
hooks, run in a matrix beside first-party methods, broken ones contained, then uninstalled.

``tests/fixtures/oodbench-fixture-algo`` is a working algorithm;
``tests/fixtures/oodbench-fixture-broken`` holds four plugins broken in four
ways (an import error, a misspelt hook, a taken name, an ``update`` that
raises mid-training). Both go into a throwaway environment layered on this
one (see ``pip_env``), so nothing here changes what else runs on the machine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pip_env import LayeredEnv

from oodbench import __version__
from oodbench.plugins import LOAD_PLUGINS_ENV
from oodbench.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
GOOD, BROKEN, METHODS = "oodbench-fixture-algo", "oodbench-fixture-broken", "oodbench-methods"
# the fixtures and the first-party methods; another plugin installed here cannot change what these tests see
ONLY = {LOAD_PLUGINS_ENV: f"{GOOD},{BROKEN},{METHODS}"}
FAILURES = {  # plugin -> what its one-line error must say
    "fixture_missing_dependency": ["import failed: ModuleNotFoundError", "oodbench_fixture_no_such_dependency"],
    "fixture_misspelt": ["PluginValidationError", "oodbench_register_algoritms"],
    "fixture_taken": ["DuplicateNameError", "'erm'", f"from {BROKEN}", "already registered by oodbench"],
}
FAST = ["--epochs", "1", "--seeds", "0", "--set", "batch_size=512", "--set", "train_eval_size=1000",
        "--set", "mlp.hidden=64"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Both fixture distributions pip-installed (from copies: a build writes into its source tree)."""
    root = tmp_path_factory.mktemp("pip-plugins")
    sources = [shutil.copytree(FIXTURES / dist, root / "src" / dist) for dist in (GOOD, BROKEN)]
    layered = LayeredEnv(root / "venv")
    layered.pip_install(*sources)
    try:
        yield layered
    finally:
        layered.pip_uninstall(GOOD, BROKEN)
    assert layered.installed(GOOD) is None and layered.installed(BROKEN) is None
    listed = layered.oodbench("plugins", "--json")
    assert listed.returncode == 0 and {GOOD, BROKEN}.isdisjoint(r["dist"] for r in json.loads(listed.stdout))


@pytest.fixture(scope="module")
def records(env):
    result = env.oodbench("plugins", "--check", "--json", **ONLY)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_the_installed_plugin_is_listed_with_its_version_target_and_hooks(env, records):
    assert env.installed(GOOD) == "0.4.2"
    focal = records["fixture_focal"]
    assert (focal["dist"], focal["version"], focal["target"]) == (GOOD, "0.4.2", "oodbench_fixture_algo.focal")
    assert focal["hooks"] == ["oodbench_register_algorithms"] and focal["loaded"] and not focal["builtin"]
    crash = records["fixture_crash"]  # an entry point naming an object, module:attr
    assert (crash["dist"], crash["target"], crash["loaded"]) == (BROKEN, "oodbench_fixture_broken.crash:plugin", True)
    assert records["vrex"]["dist"] == METHODS and records["vrex"]["loaded"]


@pytest.mark.parametrize("plugin", list(FAILURES))
def test_each_broken_plugin_is_recorded_with_its_distribution_and_error(records, plugin):
    record = records[plugin]
    assert (record["dist"], record["version"], record["loaded"]) == (BROKEN, "0.0.1", False)
    (error,) = record["errors"]
    assert "\n" not in error
    for part in FAILURES[plugin]:
        assert part in error, (part, error)


def test_the_plugins_table_shows_target_and_whether_each_loaded(env):
    result = env.oodbench("plugins", "--check", **ONLY)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert "oodbench_fixture_algo.focal" in rows["fixture_focal"] and rows["fixture_focal"].endswith("yes")
    assert "oodbench_fixture_broken.crash:plugin" in rows["fixture_crash"] and rows["fixture_crash"].endswith("yes")
    assert "oodbench.builtin.erm" in rows["oodbench.builtin.erm"]
    for plugin, parts in FAILURES.items():
        assert "oodbench_fixture_broken." in rows[plugin] and " no: " in rows[plugin] and parts[0] in rows[plugin]


def test_every_other_command_warns_once_per_broken_plugin_and_works(env):
    result = env.oodbench("list", "algorithms", "--json", **ONLY)
    assert result.returncode == 0
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(FAILURES) and "Traceback" not in result.stderr
    for plugin in FAILURES:
        (line,) = [w for w in warnings if f"plugin {plugin!r}" in w]
        assert line.startswith("oodbench: warning:") and f"from {BROKEN} did not load" in line
        assert LOAD_PLUGINS_ENV in line
    dists = {e["name"]: e["dist"] for e in json.loads(result.stdout)}
    assert dists["erm"] == "oodbench"  # the taken name stays with its holder
    assert dists["fixture_focal"] == GOOD and dists["fixture_crash"] == BROKEN and dists["vrex"] == METHODS
    assert "fixture_misspelt" not in dists


def test_load_plugins_leaves_the_broken_distribution_out(env):
    result = env.oodbench("list", "algorithms", "--json", **{LOAD_PLUGINS_ENV: GOOD})
    assert result.returncode == 0 and result.stderr == ""
    assert {e["name"] for e in json.loads(result.stdout)} == {"erm", "fixture_focal"}


@pytest.fixture(scope="module")
def matrix_run(env, tmp_path_factory):
    """The installed algorithm, a first-party method and the one that crashes, one epoch each."""
    run_dir = tmp_path_factory.mktemp("matrix") / "run"
    result = env.oodbench("run", "-d", "colored_mnist", "-b", "mlp", "-t", "float", "-a", "fixture_focal",
                          "-a", "vrex", "-a", "fixture_crash", *FAST, "--out", str(run_dir), **ONLY)
    return run_dir, result


def test_a_matrix_runs_the_installed_plugin_beside_first_party_methods(matrix_run):
    run_dir, result = matrix_run
    assert result.returncode == 1, result.stdout + result.stderr  # one failed cell, and only that
    assert "Traceback" not in result.stderr
    with Store.in_dir(run_dir) as store:
        cells = {c["algorithm"]: c for c in store.cells()}
        assert {name: c["status"] for name, c in cells.items()} == {
            "fixture_focal": "done", "vrex": "done", "fixture_crash": "failed"}
        assert cells["fixture_focal"]["hparams"]["algorithm"]["gamma"] == 2.0
        versions = {(p["kind"], p["name"]): (p["dist"], p["version"]) for p in store.plugin_versions()}
        assert versions[("algorithm", "fixture_focal")] == (GOOD, "0.4.2")
        assert versions[("algorithm", "vrex")][0] == METHODS
        assert versions[("backbone", "mlp")] == ("oodbench", __version__)
        assert len({r["cell"] for r in store.results("last") if r["split"] == "test"}) == 2


def test_an_update_that_raises_fails_its_cell_with_the_error_and_the_distribution(matrix_run):
    run_dir, result = matrix_run
    with Store.in_dir(run_dir) as store:
        (failed,) = store.cells("failed")
    assert failed["algorithm"] == "fixture_crash"
    assert failed["error"].startswith("training failed: RuntimeError: fixture_crash: simulated failure at step 3")
    assert "crash.py" in failed["error"]
    (line,) = [w for w in result.stderr.splitlines() if w.startswith("oodbench: cell")]
    assert line.startswith("oodbench: cell colored_mnist/mlp/fixture_crash/float/seed0 failed: training failed:")
    assert line.endswith(f"(algorithm 'fixture_crash' from {BROKEN} 0.0.1)")
    assert "1 failed" in result.stdout and "2 done" in result.stdout


def test_requirements_pin_the_plugins_behind_the_run_and_those_installed(env, matrix_run):
    run_dir, _ = matrix_run
    behind = env.oodbench("plugins", "--requirements", str(run_dir), **ONLY)
    assert behind.returncode == 0, behind.stderr
    methods = env.installed(METHODS)
    expected = [f"oodbench=={__version__}", f"{GOOD}==0.4.2", f"{BROKEN}==0.0.1", f"{METHODS}=={methods}"]
    assert behind.stdout.splitlines() == expected
    installed = env.oodbench("plugins", "--requirements", **ONLY)
    assert installed.returncode == 0 and installed.stdout.splitlines() == expected
    only_good = env.oodbench("plugins", "--requirements", **{LOAD_PLUGINS_ENV: GOOD})
    assert only_good.stdout.splitlines() == [f"oodbench=={__version__}", f"{GOOD}==0.4.2"]
