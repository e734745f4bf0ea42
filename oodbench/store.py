"""The results store: one SQLite file per run directory (WAL, one transaction per finished result).

Tables: ``meta`` (run configuration and versions), ``cells`` (every planned
cell with status pending/done/failed/skipped, its search configuration, the
values of the user's sweeps, its hyperparameters and error), ``trainings``
(one per trained network, the epoch of each tracked checkpoint), ``checkpoints``
(the sha256 of each kept checkpoint file, so a resume never trusts a damaged one), ``tracebacks``
(the full traceback of each failed cell), ``curves``
and ``train_stats`` (per-epoch metrics and losses), ``results`` (each cell's
metrics per checkpoint and split, as its target runs them; a stochastic target's mean over its
device draws), ``draws`` (each draw of a stochastic target's cell, per checkpoint and split) and ``plugins``
(the distribution and version of every plugin that took part in a cell).
Selection over configurations happens in reports, from these tables. JSON
and CSV are exports of this, never the other way round. A store written by
another layout (``SCHEMA_VERSION``) is refused, not misread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from typing import TYPE_CHECKING

from oodbench.errors import UsageError

if TYPE_CHECKING:  # reading a store needs neither torch nor the plugins
    from oodbench.matrix import Cell
    from oodbench.metrics import EnvMetrics
    from oodbench.train import CellResult, TrainingResult

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 2
"""SQLite ``user_version`` of this layout; 2 added search configurations and per-checkpoint results."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, training TEXT NOT NULL, dataset TEXT NOT NULL, backbone TEXT NOT NULL,
    algorithm TEXT NOT NULL, target TEXT NOT NULL, seed INTEGER NOT NULL, config INTEGER NOT NULL,
    variant TEXT NOT NULL, hparams TEXT NOT NULL, status TEXT NOT NULL, error TEXT, selected TEXT, duration_s REAL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trainings (
    key TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT, selected TEXT, duration_s REAL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tracebacks (cell TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    training TEXT NOT NULL, epoch INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (training, epoch));
CREATE TABLE IF NOT EXISTS curves (
    training TEXT NOT NULL, epoch INTEGER NOT NULL, split TEXT NOT NULL, env TEXT NOT NULL, role TEXT NOT NULL,
    part TEXT NOT NULL, acc REAL, gap REAL, worst_group_acc REAL, avg_group_acc REAL, group_acc TEXT,
    n INTEGER, ceiling REAL, PRIMARY KEY (training, epoch, split));
CREATE TABLE IF NOT EXISTS train_stats (
    training TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (training, epoch, name));
CREATE TABLE IF NOT EXISTS results (
    cell TEXT NOT NULL, checkpoint TEXT NOT NULL, epoch INTEGER NOT NULL, split TEXT NOT NULL, env TEXT NOT NULL,
    role TEXT NOT NULL, part TEXT NOT NULL, acc REAL, gap REAL, worst_group_acc REAL, avg_group_acc REAL,
    group_acc TEXT, n INTEGER, ceiling REAL, PRIMARY KEY (cell, checkpoint, split));
CREATE TABLE IF NOT EXISTS draws (
    cell TEXT NOT NULL, checkpoint TEXT NOT NULL, draw INTEGER NOT NULL, split TEXT NOT NULL, acc REAL, gap REAL,
    worst_group_acc REAL, avg_group_acc REAL, group_acc TEXT, n INTEGER, ceiling REAL,
    PRIMARY KEY (cell, checkpoint, draw, split));
CREATE TABLE IF NOT EXISTS plugins (
    cell TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, dist TEXT NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (cell, kind));
"""

METRIC_COLUMNS = ("acc", "gap", "worst_group_acc", "avg_group_acc")


def _metric_row(m: EnvMetrics) -> tuple:
    return (m.acc, m.gap, m.worst_group_acc, m.avg_group_acc, json.dumps(m.group_acc), m.n, m.ceiling)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """A connection; read-only ones fall back to ``immutable`` where SQLite cannot create the WAL index next to
    the file (a read-only directory or mount)."""
    if not readonly:
        db = sqlite3.connect(path, timeout=30.0)
    else:
        uri = path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            db.close()
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30.0)
    db.row_factory = sqlite3.Row
    return db


class Store:
    """A run directory's SQLite file; ``readonly`` for commands that only read (they work on a read-only run
    directory and never create or alter a store)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise UsageError(f"{self.path}: an empty file, not an oodbench store (a run killed before its first "
                             f"write?); remove it or choose another --out")
        try:
            self.db = _connect(self.path, readonly)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            raise UsageError(f"{self.path}: not a readable oodbench store ({error})") from None
        if version != SCHEMA_VERSION and (version or tables):
            self.db.close()
            raise UsageError(f"{self.path}: written by another oodbench store layout (version {version}, this oodbench "
                             f"reads {SCHEMA_VERSION}); rerun it into a new --out")
        if readonly:
            if "cells" not in tables:
                self.db.close()
                raise UsageError(f"{self.path}: not an oodbench store (no cells table)")
            return
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def in_dir(cls, run_dir: Path, readonly: bool = False) -> Store:
        return cls(Path(run_dir) / STORE_NAME, readonly)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_meta(self, values: dict[str, Any]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self.db.execute("SELECT key, value FROM meta")}

    def plan(self, cells: Iterable[Cell]) -> None:
        """Record every cell as pending (or skipped, with its reason); cells already stored keep their state."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO cells (key, training, dataset, backbone, algorithm, target, seed, config, variant,"
                " hparams, status, error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(c.key, c.training_key, c.dataset, c.backbone, c.algorithm, c.target, c.seed, c.config,
                  json.dumps(c.variant, sort_keys=True), json.dumps(c.hparams(), sort_keys=True),
                  "skipped" if c.skip_reason else "pending",
                  c.skip_reason, now) for c in cells])

    def record_training(self, result: TrainingResult) -> None:
        """The training row, its curves, loss statistics and checkpoint digests, in one transaction.

        A failure never replaces a finished training: its curves are what the
        finished cells were selected from. A finished training that replaces
        another (retrained because its checkpoints were damaged) sends its
        cells back to pending, so none keeps results of the old network.
        """
        splits = {s["name"]: s for s in result.splits}
        previous = self.finished_training(result.key)
        if result.status != "done" and previous is not None:
            return
        with self.db:
            if previous is not None:
                for table in ("results", "draws"):
                    self.db.execute(f"DELETE FROM {table} WHERE cell IN (SELECT key FROM cells WHERE training = ?)",
                                    (result.key,))
                self.db.execute("UPDATE cells SET status = 'pending', updated_at = ? WHERE training = ? "
                                "AND status = 'done'", (time.time(), result.key))
            self.db.execute("DELETE FROM checkpoints WHERE training = ?", (result.key,))
            self.db.executemany("INSERT INTO checkpoints VALUES (?, ?, ?)",
                                [(result.key, epoch, digest) for epoch, digest in result.checkpoints.items()])
            self.db.execute("DELETE FROM curves WHERE training = ?", (result.key,))
            self.db.execute("DELETE FROM train_stats WHERE training = ?", (result.key,))
            self.db.execute("INSERT OR REPLACE INTO trainings VALUES (?, ?, ?, ?, ?, ?)",
                            (result.key, result.status, result.error, json.dumps(result.selected),
                             result.duration_s, time.time()))
            self.db.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(result.key, epoch, name, splits[name]["env"], splits[name]["role"], splits[name]["part"],
                  *_metric_row(m)) for epoch, metrics in enumerate(result.curves, 1) for name, m in metrics.items()])
            self.db.executemany(
                "INSERT INTO train_stats VALUES (?, ?, ?, ?)",
                [(result.key, epoch, name, value) for epoch, stats in enumerate(result.stats, 1)
                 for name, value in stats.items()])

    def record_cell(self, result: CellResult, plugins: dict[str, tuple[str, str, str]]) -> None:
        """A finished (done or failed) cell with its results and plugin versions, in one transaction; a failure
        never replaces a done cell's results."""
        splits = {s["name"]: s for s in result.splits}
        done = self.db.execute("SELECT 1 FROM cells WHERE key = ? AND status = 'done'", (result.key,)).fetchone()
        if result.status != "done" and done:
            return
        with self.db:
            self.db.execute("DELETE FROM results WHERE cell = ?", (result.key,))
            self.db.execute("DELETE FROM draws WHERE cell = ?", (result.key,))
            self.db.execute("DELETE FROM tracebacks WHERE cell = ?", (result.key,))
            if result.traceback:
                self.db.execute("INSERT INTO tracebacks VALUES (?, ?)", (result.key, result.traceback))
            self.db.execute(
                "UPDATE cells SET status = ?, error = ?, selected = ?, duration_s = ?, updated_at = ? WHERE key = ?",
                (result.status, result.error, json.dumps(result.selected), result.duration_s, time.time(), result.key))
            self.db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(result.key, rule, result.selected[rule], name, splits[name]["env"], splits[name]["role"],
                  splits[name]["part"], *_metric_row(m))
                 for rule, metrics in result.results.items() for name, m in metrics.items()])
            self.db.executemany(
                "INSERT INTO draws VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(result.key, rule, i, name, *_metric_row(m))
                 for rule, draws in result.draws.items() for i, metrics in enumerate(draws) for name, m in metrics.items()])
            self.db.executemany("INSERT OR REPLACE INTO plugins VALUES (?, ?, ?, ?, ?)",
                                [(result.key, kind, *info) for kind, info in plugins.items()])

    def cell_status(self) -> dict[str, str]:
        return {r["key"]: r["status"] for r in self.db.execute("SELECT key, status FROM cells")}

    def finished_training(self, key: str) -> dict[str, int] | None:
        """The checkpoint epochs of a training that completed, or None."""
        row = self.db.execute("SELECT selected FROM trainings WHERE key = ? AND status = 'done'", (key,)).fetchone()
        return json.loads(row["selected"]) if row else None

    def tracebacks(self) -> dict[str, str]:
        """The full traceback of each failed cell that has one (a store older than this table has none)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tracebacks'").fetchone():
            return {}
        return {r["cell"]: r["text"] for r in self.db.execute("SELECT cell, text FROM tracebacks")}

    def checkpoint_digests(self, key: str) -> dict[int, str]:
        """sha256 of each kept checkpoint of a training, by epoch."""
        rows = self.db.execute("SELECT epoch, sha256 FROM checkpoints WHERE training = ?", (key,))
        return {r["epoch"]: r["sha256"] for r in rows}

    def trainings(self) -> dict[str, dict[str, int]]:
        """Per finished training, the epoch of each tracked checkpoint."""
        rows = self.db.execute("SELECT key, selected FROM trainings WHERE status = 'done'")
        return {r["key"]: json.loads(r["selected"]) for r in rows}

    def cells(self, status: str | None = None) -> list[dict[str, Any]]:
        query = ("SELECT * FROM cells" + (" WHERE status = ?" if status else "")
                 + " ORDER BY dataset, backbone, algorithm, target, seed, config")
        rows = self.db.execute(query, (status,) if status else ())
        return [dict(r) | {"hparams": json.loads(r["hparams"]), "variant": json.loads(r["variant"])} for r in rows]

    def results(self, checkpoint: str) -> list[dict[str, Any]]:
        """Result rows of done cells at ``checkpoint``, joined with their cell's identity."""
        rows = self.db.execute(
            "SELECT c.key AS cell, c.training, c.dataset, c.backbone, c.algorithm, c.target, c.seed, c.config, "
            "c.variant, c.hparams, r.* FROM results r JOIN cells c ON c.key = r.cell "
            "WHERE c.status = 'done' AND r.checkpoint = ? "
            "ORDER BY c.dataset, c.backbone, c.algorithm, c.target, c.seed, c.config, r.split", (checkpoint,))
        return [dict(r) | {"hparams": json.loads(r["hparams"]), "variant": json.loads(r["variant"]),
                           "group_acc": json.loads(r["group_acc"])} for r in rows]

    def draws(self, checkpoint: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Per (cell, split) of done cells, each device draw's metrics at ``checkpoint`` in draw order; empty for a
        store from before draws were kept."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'draws'").fetchone():
            return {}
        rows = self.db.execute(
            "SELECT d.* FROM draws d JOIN cells c ON c.key = d.cell WHERE c.status = 'done' AND d.checkpoint = ? "
            "ORDER BY d.cell, d.split, d.draw", (checkpoint,))
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault((r["cell"], r["split"]), []).append(dict(r) | {"group_acc": json.loads(r["group_acc"])})
        return out

    def curves(self, training: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM curves" + (" WHERE training = ?" if training else "") + " ORDER BY training, epoch, split"
        return [dict(r) for r in self.db.execute(query, (training,) if training else ())]

    def cell_plugins(self) -> dict[str, dict[str, dict[str, str]]]:
        """Per cell, each kind's plugin: its name, distribution and version."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for r in self.db.execute("SELECT cell, kind, name, dist, version FROM plugins"):
            out.setdefault(r["cell"], {})[r["kind"]] = {"name": r["name"], "dist": r["dist"], "version": r["version"]}
        return out

    def plugin_versions(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT DISTINCT kind, name, dist, version FROM plugins ORDER BY kind, name")
        return [dict(r) for r in rows]
