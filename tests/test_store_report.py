"""The SQLite store and reports rendered from it, on hand-made results (no training)."""

import json
import sqlite3
import statistics

import pytest
from store_support import SPLITS, VERSIONS

from oodbench.matrix import Cell
from oodbench.metrics import EnvMetrics
from oodbench.report import render, summarize
from oodbench.store import Store
from oodbench.train import CellResult, TrainingResult


def _m(acc, worst=None):
    return EnvMetrics(acc, abs(acc - 0.75) * 100, worst if worst is not None else acc, acc, {0: acc}, 100, 0.75)


def _cell(seed, algorithm="erm", lr=1e-3):
    return Cell("colored_mnist", "cnn", algorithm, "float", seed, {"epochs": 2}, {"lr": lr}, {}, {})


def _finish(store, cell, test_acc, id_acc, worst):
    metrics = {"train1": _m(0.85), "train1/holdout": _m(id_acc), "test": _m(test_acc, worst),
               "test/holdout": _m(test_acc)}
    store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS, curves=[metrics, metrics],
                                         stats=[{"loss": 0.5}, {"loss": 0.4}], selected={"val": 2}))
    store.record_cell(CellResult(cell.key, "done", selected={"val": 2}, results={"val": metrics}, splits=SPLITS),
                      VERSIONS)


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
    cell = _cell(0)
    with Store.in_dir(tmp_path) as store:
        store.plan([cell])
        _finish(store, cell, 0.3, 0.85, 0.1)
    with Store.in_dir(tmp_path) as again:
        assert again.cell_status()[cell.key] == "done"
        assert again.finished_training(cell.training_key) == {"val": 2}
        assert len(again.curves(cell.training_key)) == 8  # 2 epochs x 4 splits
        assert {p["dist"] for p in again.plugin_versions()} == {"oodbench"}
    rows = sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT count(*) FROM train_stats").fetchone()
    assert rows == (2,)


def test_report_aggregates_mean_and_sample_std_over_seeds(store):
    accs, worsts = [0.30, 0.40, 0.50], [0.10, 0.20, 0.60]
    for seed, (acc, worst) in enumerate(zip(accs, worsts)):
        cell = _cell(seed)
        store.plan([cell])
        _finish(store, cell, acc, 0.85, worst)
    (row,) = summarize(store, "val")
    assert row["seeds"] == [0, 1, 2]
    assert row["acc"].mean == pytest.approx(0.40) and row["acc"].std == pytest.approx(statistics.stdev(accs))
    assert row["gap"].mean == pytest.approx(statistics.fmean(abs(a - 0.75) * 100 for a in accs))
    assert row["worst_group_acc"].mean == pytest.approx(0.30)
    assert row["id_acc"].mean == pytest.approx(0.85) and row["acc"].n == 3
    table = render(store, "table", "val")
    assert "40.0 ± 10.0" in table and "35.0 ± 10.0" in table  # acc %, gap pp
    assert json.loads(render(store, "json", "val"))["rows"][0]["worst_group_acc"]["mean"] == pytest.approx(0.30)


def test_sweeps_get_a_variant_column_and_failures_are_listed(store):
    for lr, acc in ((1e-3, 0.3), (1e-2, 0.6)):
        cell = _cell(0, lr=lr)
        store.plan([cell])
        _finish(store, cell, acc, 0.8, acc)
    broken = _cell(0, algorithm="irm")
    store.plan([broken])
    store.record_cell(CellResult(broken.key, "failed", error="ValueError: boom"), VERSIONS)
    rows = summarize(store, "val")
    assert sorted(r["hparams"] for r in rows) == ["lr=0.001", "lr=0.01"]
    table = render(store, "table", "val")
    assert "hparams" in table and "1 failed cell(s)" in table and "ValueError: boom" in table


def test_unknown_selection_and_format_are_usage_errors(store):
    from oodbench.errors import UsageError

    with pytest.raises(UsageError, match="allowed: last, val, oracle"):
        summarize(store, "best")
    with pytest.raises(UsageError, match="allowed: table"):
        render(store, "pdf", "val")


def test_several_selections_side_by_side(store):
    cell = _cell(0)
    store.plan([cell])
    metrics = {"train1": _m(0.85), "train1/holdout": _m(0.85), "test": _m(0.2), "test/holdout": _m(0.2)}
    better = dict(metrics, test=_m(0.7))
    store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS, curves=[metrics, better],
                                         stats=[{}, {}], selected={"val": 1, "oracle": 2}))
    store.record_cell(CellResult(cell.key, "done", selected={"val": 1, "oracle": 2},
                                 results={"val": metrics, "oracle": better}, splits=SPLITS), VERSIONS)
    table = render(store, "table", ["val", "oracle"])
    val_line, oracle_line = [line for line in table.splitlines() if line.startswith("colored_mnist")]
    assert " val " in val_line and "20.0" in val_line
    assert " oracle " in oracle_line and "70.0" in oracle_line
    rows = json.loads(render(store, "json", ["val", "oracle"]))["rows"]
    assert [(r["selection"], r["acc"]["mean"]) for r in rows] == [("val", 0.2), ("oracle", 0.7)]
