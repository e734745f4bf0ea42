"""``oodbench report RUN_DIR --format html``: one self-contained page, readable offline and attachable to CI.

The leaderboard table is the text report's (``report.table_rows``); figures
come from ``plots`` as embedded PNGs; no script, no stylesheet or image
outside the file.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape
from typing import Any

from tabulate import tabulate

from oodbench import plots
from oodbench.report import (
    IDENTITY,
    side_by_side,
    swept_hparams,
    table_rows,
    variant_label,
)
from oodbench.selection import RULES
from oodbench.store import Store

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-size: 0.8em; color: #555; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""


def _table(rows: list[list[Any]], headers: list[str], table_id: str) -> str:
    """An HTML table (cells escaped by tabulate) that tests and readers can find by id."""
    html = tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True)
    return html.replace("<table>", f'<table id="{table_id}">', 1)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _figure(uri: str, caption: str) -> str:
    return f"<figure>{_img(uri, caption)}<figcaption>{escape(caption)}</figcaption></figure>"


def _cell_list(cells: list[dict[str, Any]], title: str) -> str:
    if not cells:
        return ""
    items = "".join(f"<li>{escape('/'.join(str(c[k]) for k in (*IDENTITY, 'seed')))}: {escape(c['error'] or '')}</li>"
                    for c in cells)
    return f"<h3>{len(cells)} {title}</h3><ul>{items}</ul>"


def _leaderboard(summary: list[dict[str, Any]], selections: Sequence[str]) -> str:
    headers, rows = table_rows(summary, show_selection=len(selections) > 1)
    rules = "".join(f"<li><b>{escape(name)}</b>: {escape(RULES[name].description)}</li>" for name in selections)
    return (f"<h2>Leaderboard</h2><p>Mean ± sample std over seeds; accuracies in %, gap in percentage points "
            f"to the ceiling (75 % on ColoredMNIST). Selection:</p><ul>{rules}</ul>"
            + _table(rows, headers, "leaderboard"))


def _sweeps(summary: list[dict[str, Any]]) -> str:
    """Test accuracy against each swept hyperparameter, per identity and test environment."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in summary:
        if row["swept"]:
            groups[(*(row[k] for k in IDENTITY), row["env"])].append(row)
    figures = [_figure(plots.sweep_plot(rows, key, f"{' · '.join(map(str, identity))}: {key}"),
                       f"{'/'.join(map(str, identity))}: test accuracy against {key}")
               for identity, rows in sorted(groups.items()) if len(rows) > 1 for key in rows[0]["swept"]]
    if not figures:
        return ""
    return f'<h2>Hyperparameter sweeps</h2><div class="figures">{"".join(figures)}</div>'


def _curves(store: Store) -> str:
    """One figure per training run; the targets deployed from it share it."""
    cells = store.cells()
    swept = swept_hparams({c["key"]: c for c in cells})
    by_training: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.curves():
        by_training[row["training"]].append(row)
    first = {}
    for cell in cells:
        first.setdefault(cell["training"], cell)
    variants = {training: variant_label({k: v for k, v in swept[cell["key"]].items()
                                         if k not in cell["hparams"]["target"]}) for training, cell in first.items()}
    figures = []
    for training, rows in sorted(by_training.items(), key=lambda item: (
            *(str(first[item[0]][k]) for k in IDENTITY), variants[item[0]], first[item[0]]["seed"])):
        cell, variant = first[training], variants[training]
        title = f"{cell['dataset']} · {cell['backbone']} · {cell['algorithm']} · seed {cell['seed']}"
        figures.append(_figure(plots.training_curves(rows, title + (f"\n{variant}" if variant else "")),
                               f"{title}{' · ' + variant if variant else ''} (training {training})"))
    if not figures:
        return ""
    return (f"<h2>Training curves</h2><p>Accuracy per epoch: train (the training environments' evaluation "
            f"subsample), val (their held-out parts), test (the test environments).</p>"
            f'<div class="figures">{"".join(figures)}</div>')


def _configuration(store: Store) -> str:
    cells = store.cells()
    rows = [[*(c[k] for k in IDENTITY), c["seed"], c["status"], c["selected"] or "",
             json.dumps(c["hparams"], sort_keys=True)] for c in cells]
    plugins = [[p["kind"], p["name"], p["dist"], p["version"]] for p in store.plugin_versions()]
    return ("<h2>Configuration</h2><h3>Cells and hyperparameters</h3>"
            + _table(rows, [*IDENTITY, "seed", "status", "selected epochs", "hparams"], "cells")
            + "<h3>Plugin versions</h3>" + _table(plugins, ["kind", "name", "distribution", "version"], "plugins")
            + f"<h3>Run metadata</h3><pre>{escape(json.dumps(store.meta(), indent=2, sort_keys=True))}</pre>")


def render_html(store: Store, selections: Sequence[str]) -> str:
    """The whole page; bar chart and sweeps follow the first selection rule."""
    summary = side_by_side(store, selections)
    primary = [row for row in summary if row["selection"] == selections[0]]
    meta = store.meta()
    name = (meta.get("matrix") or {}).get("name", store.path.parent.name)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(Counter(store.cell_status().values()).items()))
    body = [f"<h1>oodbench report: {escape(str(name))}</h1>",
            f"<p>Run directory <code>{escape(str(store.path.parent))}</code>; cells: {escape(counts or 'none')}.</p>",
            _leaderboard(summary, selections),
            _cell_list(store.cells("failed"), "failed cell(s)"),
            _cell_list(store.cells("skipped"), "skipped cell(s)")]
    if primary:
        body.append(f"<h2>Test and worst-group accuracy ({escape(selections[0])})</h2>"
                    + _img(plots.accuracy_bars(primary), "test and worst-group accuracy per method"))
        body.append(_sweeps(primary))
    body += [_curves(store), _configuration(store)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>oodbench report: {escape(str(name))}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>")
