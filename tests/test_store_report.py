"""The SQLite store and reports rendered from it, on hand-made results (no training)."""

import json
import sqlite3
import statistics

import pytest
from store_support import SPLITS, VERSIONS

from oodbench.errors import UsageError
from oodbench.matrix import Cell
from oodbench.metrics import EnvMetrics
from oodbench.render import render
from oodbench.report import summarize
from oodbench.store import Store
from oodbench.train import CellResult, TrainingResult


def _m(acc, worst=None):
    return EnvMetrics(acc, abs(acc - 0.75) * 100, worst if worst is not None else acc, acc, {0: acc}, 100, 0.75)


def _cell(seed, algorithm="erm", lr=1e-3, config=0, variant=None):
    return Cell("colored_mnist", "cnn", algorithm, "float", seed, {"epochs": 2}, {"lr": lr}, {}, {}, config=config,
                variant=variant or {})


def _epoch(test, val=0.85, idtest=0.85, held=None, worst=None):
    return {"train1": _m(0.9), "train1/val": _m(val), "train1/idtest": _m(idtest), "test": _m(test, worst),
            "test/holdout": _m(test if held is None else held)}


def _record(store, cell, curves, checkpoints):
    """A finished training with ``curves`` (one metrics dict per epoch) and a cell deployed at each checkpoint."""
    store.plan([cell])
    store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS, curves=curves,
                                         stats=[{"loss": 0.5}] * len(curves), selected=checkpoints))
    store.record_cell(CellResult(cell.key, "done", selected=checkpoints,
                                 results={name: curves[epoch - 1] for name, epoch in checkpoints.items()},
                                 splits=SPLITS), VERSIONS)


def _finish(store, cell, test_acc, id_acc, worst):
    metrics = _epoch(test_acc, idtest=id_acc, worst=worst)
    _record(store, cell, [metrics, metrics], {"last": 2, "best_val": 2, "best_test": 2})


@pytest.fixture
def store(tmp_path):
    with Store.in_dir(tmp_path) as s:
        yield s


def test_store_uses_wal_and_keeps_planned_cells(store):
    cells = [_cell(0), _cell(1)]
    store.plan(cells)
    store.plan(cells)  # planning again (resume) keeps one row per cell
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.cell_status() == {c.key: "pending" for c in cells}
    skipped = Cell("colored_mnist", "cnn", "irm", "float", 0, {}, {}, {}, {}, skip_reason="needs env")
    store.plan([skipped])
    assert store.cells("skipped")[0]["error"] == "needs env"


def test_finished_cells_survive_a_new_connection(tmp_path):
    cell = _cell(0, config=3, variant={"lr": 0.001})
    with Store.in_dir(tmp_path) as store:
        _finish(store, cell, 0.3, 0.85, 0.1)
    with Store.in_dir(tmp_path) as again:
        assert again.cell_status()[cell.key] == "done"
        assert again.finished_training(cell.training_key) == {"last": 2, "best_val": 2, "best_test": 2}
        assert len(again.curves(cell.training_key)) == 10  # 2 epochs x 5 splits
        assert {p["dist"] for p in again.plugin_versions()} == {"oodbench"}
        (row,) = again.cells("done")
        assert (row["config"], row["variant"]) == (3, {"lr": 0.001})
    rows = sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT count(*) FROM train_stats").fetchone()
    assert rows == (2,)


def test_a_store_of_another_layout_is_refused_in_one_line(tmp_path):
    db = sqlite3.connect(tmp_path / "results.sqlite")
    db.execute("CREATE TABLE cells (key TEXT)")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="another oodbench store layout"):
        Store.in_dir(tmp_path)


def test_report_aggregates_mean_and_standard_error_over_trials(store):
    accs, worsts = [0.30, 0.40, 0.50], [0.10, 0.20, 0.60]
    for seed, (acc, worst) in enumerate(zip(accs, worsts)):
        _finish(store, _cell(seed), acc, 0.85, worst)
    (row,) = summarize(store, "val")
    assert row["seeds"] == [0, 1, 2]
    assert row["acc"].mean == pytest.approx(0.40) and row["acc"].std == pytest.approx(statistics.stdev(accs))
    assert row["acc"].se == pytest.approx(0.1 / 3 ** 0.5)  # stdev 0.1 over n = 3
    assert row["gap"].mean == pytest.approx(statistics.fmean(abs(a - 0.75) * 100 for a in accs))
    assert row["worst_group_acc"].mean == pytest.approx(0.30)
    assert row["id_acc"].mean == pytest.approx(0.85) and row["acc"].n == 3
    table = render(store, "table", "val")
    assert "40.0 ± 5.8" in table and "35.0 ± 5.8" in table  # acc %, gap pp, ± SE
    assert "mean ± SE over trials (n = 3)" in table
    exported = json.loads(render(store, "json", "val"))["rows"][0]
    assert exported["worst_group_acc"]["mean"] == pytest.approx(0.30)
    assert exported["acc"]["std"] == pytest.approx(0.1) and exported["acc"]["se"] == pytest.approx(0.1 / 3 ** 0.5)


def _acc(config, epoch, trial):
    """Test accuracy distinct for every (configuration, epoch), shifted by 0.02 in trial 1."""
    return round(0.10 + 0.10 * (3 * config + epoch - 1) + 0.02 * trial, 4)


def _two_configs_three_checkpoints(store):
    """Configuration 0: validation best at epoch 1, test holdout best at epoch 2 and 0.3 at the last;
    configuration 1: validation 0.8 at epoch 1 (beats 0), test holdout 0.5 at the last (beats 0)."""
    val = {0: [0.6, 0.5, 0.55], 1: [0.8, 0.6, 0.7]}
    held = {0: [0.2, 0.9, 0.3], 1: [0.1, 0.4, 0.5]}
    for trial in (0, 1):
        for config in (0, 1):
            curves = [_epoch(_acc(config, e, trial), val=val[config][e - 1], held=held[config][e - 1],
                             idtest=0.7 + 0.01 * (3 * config + e)) for e in (1, 2, 3)]
            best_val = 1 + max(range(3), key=lambda i: (val[config][i], -i))
            best_test = 1 + max(range(3), key=lambda i: (held[config][i], -i))
            _record(store, _cell(trial, lr=[1e-3, 3e-4][config], config=config), curves,
                    {"last": 3, "best_val": best_val, "best_test": best_test})


def test_every_rule_picks_its_own_configuration_and_checkpoint(store):
    _two_configs_three_checkpoints(store)
    picked = {}
    for rule in ("val", "oracle", "oracle_epoch", "last"):
        (row,) = summarize(store, rule)
        assert row["seeds"] == [0, 1] and row["searched"] == 2 and row["hparams"] == ""
        picked[rule] = (row["configs"], row["epochs"], round(row["acc"].mean, 4), round(row["acc"].se, 4))
    assert picked == {
        "val": ([1, 1], [1, 1], 0.41, 0.01),           # (config 1, epoch 1): 0.40 and 0.42
        "oracle": ([1, 1], [3, 3], 0.61, 0.01),        # (config 1, last epoch)
        "oracle_epoch": ([0, 0], [2, 2], 0.21, 0.01),  # (config 0, epoch 2)
        "last": ([0, 0], [3, 3], 0.31, 0.01),          # (config 0, last epoch)
    }
    (val,) = summarize(store, "val")
    assert val["id_acc"].mean == pytest.approx(0.74)  # the idtest part of (config 1, epoch 1)


def test_one_table_per_rule_in_every_text_format(store):
    _two_configs_three_checkpoints(store)
    rules = ["val", "oracle", "oracle_epoch"]
    table = render(store, "table", rules)
    assert [line.split(":")[0] for line in table.splitlines() if line.startswith("selection ")] == [
        "selection val", "selection oracle", "selection oracle_epoch"]
    assert "41.0 ± 1.0" in table and "61.0 ± 1.0" in table and "21.0 ± 1.0" in table
    markdown = render(store, "markdown", "oracle")
    assert "| algorithm" in markdown and "61.0 ± 1.0" in markdown
    latex = render(store, "latex", rules)
    assert latex.count(r"\begin{table}") == 3 and r"61.0 $\pm$ 1.0" in latex and r"\label{tab:oodbench-oracle-epoch}" in latex
    rows = json.loads(render(store, "json", rules))["rows"]
    assert [(r["selection"], r["configs"], r["epochs"]) for r in rows] == [
        ("val", [1, 1], [1, 1]), ("oracle", [1, 1], [3, 3]), ("oracle_epoch", [0, 0], [2, 2])]
    lines = render(store, "csv", "val").splitlines()
    assert lines[0].startswith("dataset,backbone,algorithm,target,hparams,env,selection,seeds,configs,searched,acc_mean")
    assert ",val,0 1,1 1,2," in lines[1]


def test_user_sweeps_stay_separate_rows_and_failures_are_listed(store):
    for lr, acc in ((1e-3, 0.3), (1e-2, 0.6)):
        _finish(store, _cell(0, lr=lr, variant={"lr": lr}), acc, 0.8, acc)
    broken = _cell(0, algorithm="irm")
    store.plan([broken])
    store.record_cell(CellResult(broken.key, "failed", error="ValueError: boom"), VERSIONS)
    rows = summarize(store, "val")
    assert sorted(r["hparams"] for r in rows) == ["lr=0.001", "lr=0.01"]
    table = render(store, "table", "val")
    assert "hparams" in table and "1 failed cell(s)" in table and "ValueError: boom" in table


def test_unknown_selection_and_format_are_usage_errors(store):
    with pytest.raises(UsageError, match="allowed: val, oracle, oracle_epoch, last"):
        summarize(store, "best")
    with pytest.raises(UsageError, match="allowed: table"):
        render(store, "pdf", "val")
