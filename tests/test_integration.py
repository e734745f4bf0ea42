"""End to end on real ColoredMNIST through the CLI: train, store, report, fail a cell, resume."""

import csv
import io
import json
import sqlite3

import pytest
import torch

from oodbench.builtin.erm import ERM
from oodbench.cli import main
from oodbench.plugins import PluginRecord, get_plugins
from oodbench.store import Store
from oodbench.testing import small_colored_mnist


class ExplodingERM(ERM):
    """ERM whose loss turns NaN on the second step: the cell must fail, the matrix must go on."""

    name = "exploding"

    def update(self, batches):
        stats = super().update(batches)
        self.steps = getattr(self, "steps", 0) + 1
        return {"loss": float("nan")} if self.steps == 2 else stats


class ExplodingPlugin:
    from oodbench import hookimpl

    @hookimpl
    def oodbench_register_algorithms(self, register):
        register(ExplodingERM)


@pytest.fixture
def exploding():
    plugins = get_plugins()
    plugins.add(ExplodingPlugin(), PluginRecord("exploding", "test-exploding", "0", "tests"))
    try:
        yield
    finally:
        plugins.remove("exploding")


@pytest.mark.slow
def test_erm_one_epoch_shows_the_spurious_correlation(tmp_path, exploding, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "-d", "colored_mnist", "-b", "cnn", "-a", "erm", "-a", "exploding", "-t", "float",
            "--epochs", "1", "--seeds", "0", "--out", str(run_dir)]
    assert main(argv) == 1  # one failed cell
    printed = capsys.readouterr().out
    assert "1 failed cell(s)" in printed and "loss became nan" in printed

    with Store.in_dir(run_dir) as store:
        cells = {c["algorithm"]: c for c in store.cells()}
        assert cells["erm"]["status"] == "done"
        assert cells["exploding"]["status"] == "failed"
        assert "FloatingPointError" in cells["exploding"]["error"]
        rows = {r["split"]: r for r in store.results("best_val") if r["algorithm"] == "erm"}
        train = (rows["train1"]["acc"] + rows["train2"]["acc"]) / 2
        in_dist = (rows["train1/idtest"]["acc"] + rows["train2/idtest"]["acc"]) / 2
        test = rows["test"]
        # ERM learns the color: ~85 % where color agrees with the label 80-90 % of the time,
        # far below chance where the correlation flips (seed report: 35.4 % after 50 epochs)
        assert 0.80 < train < 0.90
        assert 0.80 < in_dist < 0.90
        assert test["acc"] < 0.40
        assert test["gap"] == pytest.approx(abs(test["acc"] - 0.75) * 100)
        assert test["worst_group_acc"] < 0.2
        assert test["n"] == 18_000 and rows["test/holdout"]["n"] == 2_000
        assert {r["checkpoint"] for r in store.results("best_test")} == {"best_test"}
        curves = store.curves()
        assert {c["epoch"] for c in curves} == {1}
        versions = {p["kind"]: p for p in store.plugin_versions()}
        assert versions["algorithm"]["dist"] in ("oodbench", "test-exploding")
        assert store.meta()["versions"]["torch"] == torch.__version__

    assert main(["report", str(run_dir), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    assert row["algorithm"] == "erm" and row["acc"]["n"] == 1
    assert row["acc"]["mean"] == pytest.approx(test["acc"])
    assert report["failed"][0]["algorithm"] == "exploding"

    assert main(["report", str(run_dir), "--format", "csv", "--selection", "oracle"]) == 0
    (csv_row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert csv_row["selection"] == "oracle" and float(csv_row["acc_mean"]) < 0.5

    assert main(["report", str(run_dir), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "| erm " in markdown and "; colored_mnist · cnn · float" in markdown  # the constant columns: the heading

    # --resume keeps the done cell as it is and retries only the failed one
    before = sqlite3.connect(run_dir / "results.sqlite").execute(
        "SELECT updated_at FROM cells WHERE algorithm = 'erm'").fetchone()
    assert main(argv + ["--resume"]) == 1
    after = sqlite3.connect(run_dir / "results.sqlite").execute(
        "SELECT updated_at FROM cells WHERE algorithm = 'erm'").fetchone()
    assert before == after


@pytest.mark.slow
def test_process_executor_runs_seeds_in_workers(tmp_path, capsys):
    """On the 500-image copy of ColoredMNIST (the workers see the spec through the inherited environment)."""
    run_dir = tmp_path / "run"
    argv = ["run", "-d", "small", "-b", "mlp", "-a", "erm", "--epochs", "2", "--seeds", "0,1",
            "--executor", "process", "--jobs", "2", "--set", "batch_size=256", "--out", str(run_dir)]
    with small_colored_mnist(tmp_path / "specs", "small"):
        assert main(argv) == 0
    with Store.in_dir(run_dir) as store:
        cells = store.cells()
        assert [c["status"] for c in cells] == ["done", "done"]
        assert {c["seed"] for c in cells} == {0, 1}
        assert all(c["hparams"]["training"]["batch_size"] == 256 for c in cells)
        tests = [r["acc"] for r in store.results("last") if r["split"] == "test"]
        assert len(tests) == 2 and all(acc < 0.5 for acc in tests)
    assert "mean ± SE over trials (n = 2)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_bare_resume_finishes_the_run_as_it_was_started(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "-b", "mlp", "-a", "erm", "--epochs", "1", "--seeds", "3", "--set", "batch_size=512",
            "--out", str(run_dir)]
    assert main(argv) == 0
    with Store.in_dir(run_dir) as store:
        (cell,) = store.cells()
        trained = store.db.execute("SELECT updated_at FROM trainings").fetchall()
        store.db.execute("UPDATE cells SET status = 'pending' WHERE key = ?", (cell["key"],))
        store.db.commit()
    assert main(["run", "--out", str(run_dir), "--resume"]) == 0
    with Store.in_dir(run_dir) as store:
        # the finished training is reused from its checkpoints, not trained again
        assert store.db.execute("SELECT updated_at FROM trainings").fetchall() == trained
        (again,) = store.cells()  # the default matrix (cnn) was not added
        assert again["key"] == cell["key"] and again["status"] == "done"
        assert again["backbone"] == "mlp" and again["seed"] == 3
        assert [r["argv"] for r in store.meta()["resumes"]] == [["run", "--out", str(run_dir), "--resume"]]
    capsys.readouterr()
