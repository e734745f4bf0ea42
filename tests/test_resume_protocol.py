"""A real search run end to end, and ``--resume`` after the data or a plugin changed: refused, never mixed."""

import shutil
import sqlite3
import subprocess
import sys

import pytest
from cli_support import subprocess_env

from oodbench.data.catalog import PATH_ENV
from oodbench.store import STORE_NAME
from oodbench.testing import write_small_spec

CLI = [sys.executable, "-m", "oodbench.cli"]
RUN = ["run", "-d", "tiny", "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", "1", "--set", "batch_size=50"]


def _cli(args, specs, cwd):
    return subprocess.run([*CLI, *args], env=subprocess_env(**{PATH_ENV: str(specs)}), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _done(run_dir):
    db = sqlite3.connect(run_dir / STORE_NAME)
    try:
        return sorted(db.execute("SELECT seed, config, training FROM cells WHERE status = 'done'").fetchall())
    finally:
        db.close()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished search run (2 configurations x 2 trials) on the small ColoredMNIST, trained once."""
    root = tmp_path_factory.mktemp("search")
    specs, run_dir = root / "specs", root / "run"
    write_small_spec(specs, "tiny")
    result = _cli([*RUN, "--n-hparams", "2", "--trials", "2", "--out", str(run_dir)], specs, root)
    assert result.returncode == 0, result.stderr
    return specs, run_dir


@pytest.fixture
def started(finished, tmp_path):
    """A copy of the finished run and its specs for one test to resume, edit or damage."""
    specs, run_dir = tmp_path / "specs", tmp_path / "run"
    shutil.copytree(finished[0], specs)
    shutil.copytree(finished[1], run_dir)
    return specs, run_dir


@pytest.mark.slow
def test_a_search_run_trains_every_configuration_and_trial_once(started, tmp_path):
    specs, run_dir = started
    done = _done(run_dir)
    assert [(seed, config) for seed, config, _ in done] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({training for _, _, training in done}) == 4
    again = _cli([*RUN, "--n-hparams", "2", "--trials", "2", "--out", str(run_dir), "--resume"], specs, tmp_path)
    assert again.returncode == 0, again.stderr
    assert _done(run_dir) == done  # nothing retrained, nothing added
    report = _cli(["report", str(run_dir), "--selection", "val,oracle,oracle_epoch,last"], specs, tmp_path)
    assert report.returncode == 0 and report.stdout.count("mean ± SE over trials (n = 2)") == 4


@pytest.mark.slow
def test_resume_after_a_spec_edit_is_refused_and_the_store_is_untouched(started, tmp_path):
    specs, run_dir = started
    before = _done(run_dir)
    spec = specs / "tiny.toml"
    spec.write_text(spec.read_text().replace("flip = 0.9", "flip = 0.7"))
    result = _cli([*RUN, "--n-hparams", "2", "--trials", "3", "--out", str(run_dir), "--resume"], specs, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("oodbench: error: --resume: dataset tiny's spec changed since this run started")
    assert "new --out" in line
    assert _done(run_dir) == before


@pytest.mark.slow
def test_resume_after_a_plugin_version_changed_is_refused(started, tmp_path):
    specs, run_dir = started
    db = sqlite3.connect(run_dir / STORE_NAME)
    with db:
        db.execute("UPDATE plugins SET version = '0.0.1' WHERE kind = 'algorithm'")
    db.close()
    result = _cli([*RUN, "--n-hparams", "2", "--trials", "2", "--out", str(run_dir), "--resume"], specs, tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--resume: algorithm 'erm' is now oodbench" in line and "used oodbench 0.0.1" in line
