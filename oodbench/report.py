"""Reports rendered from the store: one row per (dataset, backbone, algorithm, target, variant, test env).

Every number is mean ± sample std over seeds with the seed count, under one
named selection rule. Accuracies print in percent, ``gap`` in percentage
points to the environment's ceiling (75 % on ColoredMNIST). Text formats are
rendered here; ``html`` by ``html_report`` from the same summary rows.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from oodbench.errors import UsageError
from oodbench.selection import RULES
from oodbench.store import STORE_NAME, Store

FORMATS = ("table", "markdown", "json", "csv", "html")
METRICS = ("acc", "gap", "worst_group_acc", "avg_group_acc", "id_acc")
HEADERS = {"acc": "acc %", "gap": "gap pp", "worst_group_acc": "worst-group %", "avg_group_acc": "avg-group %",
           "id_acc": "ID acc %"}
IDENTITY = ("dataset", "backbone", "algorithm", "target")


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def text(self, scale: float) -> str:
        if self.n == 1:
            return f"{self.mean * scale:.1f}"
        return f"{self.mean * scale:.1f} ± {self.std * scale:.1f}"


def open_store(run_dir: Path) -> Store:
    if not (Path(run_dir) / STORE_NAME).is_file():
        raise UsageError(f"{run_dir}: not a run directory (no {STORE_NAME})")
    return Store.in_dir(run_dir)


def swept_hparams(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cell, the hyperparameters (short name -> value) that differ between cells of the same identity:
    the axes of a sweep, which label the rows and which the HTML report plots against."""
    by_identity: dict[tuple, list[str]] = defaultdict(list)
    for key, cell in cells.items():
        by_identity[tuple(cell[k] for k in IDENTITY)].append(key)
    swept = {}
    for keys in by_identity.values():
        flat = {k: {f"{sec}.{name}": v for sec, values in cells[k]["hparams"].items() for name, v in values.items()}
                for k in keys}
        varying = sorted({n for f in flat.values() for n in f if len({json.dumps(g.get(n)) for g in flat.values()}) > 1})
        for k in keys:
            swept[k] = {n.split(".", 1)[1]: flat[k].get(n) for n in varying}
    return swept


def variant_label(swept: dict[str, Any]) -> str:
    """The ``hparams`` column of a sweep's row, e.g. ``lr=0.001``."""
    return ", ".join(f"{n}={v}" for n, v in swept.items())


def summarize(store: Store, selection: str) -> list[dict[str, Any]]:
    """Aggregate rows over seeds for every test environment."""
    if selection not in RULES:
        raise UsageError(f"--selection {selection!r}: unknown (allowed: {', '.join(RULES)})")
    cells: dict[str, dict[str, Any]] = {}
    tests: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    id_accs: dict[str, list[float]] = defaultdict(list)
    for row in store.results(selection):
        cells[row["cell"]] = row
        if row["role"] == "test" and row["part"] == "main":
            tests[row["cell"]][row["env"]] = row
        elif row["role"] == "train" and row["part"] == "holdout":
            id_accs[row["cell"]].append(row["acc"])
    swept = swept_hparams(cells)
    groups: dict[tuple, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for cell, envs in tests.items():
        for env, row in envs.items():
            groups[(*(cells[cell][k] for k in IDENTITY), variant_label(swept[cell]), env)].append((cell, row))
    summary = []
    for key in sorted(groups):
        members = groups[key]
        row: dict[str, Any] = dict(zip((*IDENTITY, "hparams", "env"), key))
        row["selection"] = selection
        row["seeds"] = sorted(cells[c]["seed"] for c, _ in members)
        row["cells"] = sorted(c for c, _ in members)
        row["swept"] = swept[members[0][0]]
        row["ceiling"] = members[0][1]["ceiling"]
        for metric in METRICS[:4]:
            row[metric] = Stat.of([r[metric] for _, r in members])
        ids = [statistics.fmean(id_accs[c]) for c, _ in members if id_accs[c]]
        row["id_acc"] = Stat.of(ids) if ids else None
        summary.append(row)
    return summary


def scale(metric: str) -> float:
    """Stored fractions print in percent; ``gap`` is stored in percentage points already."""
    return 1.0 if metric == "gap" else 100.0


def table_rows(summary: list[dict[str, Any]], show_selection: bool) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells of the leaderboard table, shared by every text format and the HTML page."""
    show_variant = any(r["hparams"] for r in summary)
    headers = [*IDENTITY, *(["hparams"] if show_variant else []), "env", *(["selection"] if show_selection else []),
               "seeds", *(HEADERS[m] for m in METRICS)]
    rows = []
    for r in summary:
        values = [r[m].text(scale(m)) if r[m] else "-" for m in METRICS]
        rows.append([*(r[k] for k in IDENTITY), *([r["hparams"]] if show_variant else []), r["env"],
                     *([r["selection"]] if show_selection else []), str(len(r["seeds"])), *values])
    return headers, rows


def _stat_dict(stat: Stat | None) -> dict[str, float] | None:
    return None if stat is None else {"mean": stat.mean, "std": stat.std, "n": stat.n}


def side_by_side(store: Store, selections: Sequence[str]) -> list[dict[str, Any]]:
    """Summary rows of several selection rules, each identity's rules next to each other in the given order."""
    order = {name: i for i, name in enumerate(selections)}
    return sorted((row for name in selections for row in summarize(store, name)),
                  key=lambda r: (*(r[k] for k in (*IDENTITY, "hparams", "env")), order[r["selection"]]))


def render(store: Store, fmt: str, selections: str | Sequence[str]) -> str:
    """The report of a run in ``fmt``, under one selection rule or several side by side."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: unknown (allowed: {', '.join(FORMATS)})")
    selections = [selections] if isinstance(selections, str) else list(selections)
    if fmt == "html":
        from oodbench.html_report import render_html

        return render_html(store, selections)
    summary = side_by_side(store, selections)
    failed, skipped = store.cells("failed"), store.cells("skipped")
    if fmt == "json":
        return json.dumps({
            "selections": selections, "selection_rules": {name: RULES[name].description for name in selections},
            "rows": [{**{k: r[k] for k in (*IDENTITY, "hparams", "env", "selection", "seeds")},
                      **{m: _stat_dict(r[m]) for m in METRICS}} for r in summary],
            "failed": [{k: c[k] for k in (*IDENTITY, "seed", "error")} for c in failed],
            "skipped": [{k: c[k] for k in (*IDENTITY, "seed", "error")} for c in skipped],
            "meta": store.meta(), "plugins": store.plugin_versions(),
        }, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*IDENTITY, "hparams", "env", "selection", "seeds",
                         *(f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n"))])
        for r in summary:
            stats = [v for m in METRICS for v in ((r[m].mean, r[m].std, r[m].n) if r[m] else ("", "", ""))]
            writer.writerow([*(r[k] for k in IDENTITY), r["hparams"], r["env"], r["selection"],
                             " ".join(map(str, r["seeds"])), *stats])
        return out.getvalue()
    headers, rows = table_rows(summary, show_selection=len(selections) > 1)
    table = tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                     disable_numparse=True)
    rules = "; ".join(f"{name}: {RULES[name].description}" for name in selections)
    lines = [f"selection {rules}; mean ± std over seeds", "", table]
    if failed:
        lines += ["", f"{len(failed)} failed cell(s):"]
        lines += [f"  {c['dataset']}/{c['backbone']}/{c['algorithm']}/{c['target']}/seed{c['seed']}: {c['error']}"
                  for c in failed]
    if skipped:
        lines += ["", f"{len(skipped)} skipped cell(s):"]
        lines += [f"  {c['dataset']}/{c['backbone']}/{c['algorithm']}/{c['target']}/seed{c['seed']}: {c['error']}"
                  for c in skipped]
    return "\n".join(lines)
