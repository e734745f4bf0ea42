"""The fault suite's shared set-up: a site holding the fault plugins, the small ColoredMNIST as ``faulty_small``,
a data home that links the real MNIST cache, and helpers that run the CLI and read a store."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_support import FIRST_PARTY, subprocess_env
from oodbench.plugins import LOAD_PLUGINS_ENV
from oodbench.data.mnist import data_home, load_mnist
from oodbench.store import STORE_NAME
from oodbench.testing import small_spec_text

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "oodbench.cli"]
TIMEOUT_S = 600
TINY = ["-d", "faulty_small", "-b", "mlp", "-a", "faulty_erm", "--epochs", "2", "--set", "batch_size=64",
        "--set", "train_eval_size=0"]
"""A run of seconds: 500 images per environment, the MLP, two epochs."""


@dataclass
class FaultSite:
    root: Path
    env: dict[str, str]

    def run(self, args: list[str], fault: str | None = None, once: Path | None = None,
            **env: str) -> subprocess.CompletedProcess:
        """``oodbench ARGS`` in a subprocess with ``fault`` armed (once, while the file ``once`` exists)."""
        extra = {"OODBENCH_FAULT": fault, "OODBENCH_FAULT_ONCE": str(once) if once else None} | env
        environ = {k: v for k, v in (self.env | extra).items() if v is not None}
        return subprocess.run([*CLI, *args], env=environ, cwd=self.root, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)

    def popen(self, args: list[str], **env: str) -> subprocess.Popen:
        return subprocess.Popen([*CLI, *args], env=self.env | env, cwd=self.root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def fault_site(tmp_path_factory) -> FaultSite:
    load_mnist()  # the real MNIST cache exists before the processes link to it
    root = tmp_path_factory.mktemp("faults")
    site = root / "site"
    info = site / "oodbench_faults-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: oodbench-faults\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[oodbench]\nfaults = faulty_plugins\n")
    shutil.copy(HERE / "faulty_plugins.py", site / "faulty_plugins.py")
    spec = root / "specs" / "faulty_small.toml"
    spec.parent.mkdir()
    spec.write_text(small_spec_text())
    home = root / "data"
    home.mkdir()
    (home / "mnist").symlink_to(data_home() / "mnist", target_is_directory=True)
    pythonpath = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = subprocess_env(PYTHONPATH=pythonpath, OODBENCH_DATA=str(home), OODBENCH_FAULT_SPEC=str(spec),
                         OMP_NUM_THREADS="1", OODBENCH_FAULT=None, OODBENCH_FAULT_ONCE=None,
                         **{LOAD_PLUGINS_ENV: f"{FIRST_PARTY},oodbench-faults"})
    return FaultSite(root, env)


def query(run_dir: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(f"file:{run_dir / STORE_NAME}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def results(run_dir: Path) -> dict[tuple, tuple]:
    """Every stored result by (cell, checkpoint, split): the numbers an uninterrupted run must reproduce."""
    return {(cell, checkpoint, split): (epoch, acc, worst) for cell, checkpoint, split, epoch, acc, worst in query(
        run_dir, "SELECT cell, checkpoint, split, epoch, acc, worst_group_acc FROM results")}


def assert_complete_once(run_dir: Path, cells: int, trainings: int, epochs: int = 2) -> None:
    """Every cell done exactly once, one training row each, one curve row per (epoch, split), no duplicates."""
    statuses = query(run_dir, "SELECT status, count(*) FROM cells GROUP BY status")
    assert statuses == [("done", cells)], statuses
    assert query(run_dir, "SELECT count(*), count(DISTINCT key) FROM trainings WHERE status = 'done'") == [
        (trainings, trainings)]
    curves = query(run_dir, "SELECT training, count(*), count(DISTINCT epoch), count(DISTINCT split) FROM curves "
                            "GROUP BY training")
    assert len(curves) == trainings and all(n == e * s and e == epochs for _, n, e, s in curves), curves
    per_cell = query(run_dir, "SELECT cell, count(*), count(DISTINCT checkpoint || '/' || split) FROM results "
                              "GROUP BY cell")
    assert len(per_cell) == cells and all(n == distinct > 0 for _, n, distinct in per_cell), per_cell


@pytest.fixture
def fault_plugins(fault_site, monkeypatch):
    """The fault site's plugins and dataset loaded in this process, for tests that call ``main`` directly."""
    from oodbench.plugins import reset_plugins

    for key in ("OODBENCH_DATA", "OODBENCH_FAULT_SPEC", LOAD_PLUGINS_ENV):
        monkeypatch.setenv(key, fault_site.env[key])
    monkeypatch.syspath_prepend(str(fault_site.root / "site"))
    reset_plugins()
    yield
    reset_plugins()
