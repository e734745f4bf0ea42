"""``oodbench report RUN_DIR --format html``: one self-contained page, readable offline and attachable to CI.

The leaderboard tables are the text report's (``report.rule_table``, one per
selection rule); figures come from ``plots`` as embedded PNGs, among them
test accuracy against every searched hyperparameter with the configuration
each rule chose marked; no script, no stylesheet or image outside the file.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape
from typing import Any

from tabulate import tabulate

from oodbench import plots
from oodbench.report import IDENTITY, choices, rule_heading, rule_table, summarize, variant_label
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


def _leaderboard(summaries: dict[str, list[dict[str, Any]]]) -> str:
    """One table per selection rule, each under the sentence that says what it shows."""
    tables = []
    for name, summary in summaries.items():
        caption, headers, rows = rule_table(summary)
        heading = rule_heading(name, summary) + (f"; {caption}" if caption else "")
        tables.append(f"<h3>{escape(name)}</h3><p>{escape(heading)}</p>"
                      + _table(rows, headers, f"leaderboard-{name}"))
    return ("<h2>Leaderboard</h2><p>Within each trial a rule picks one searched configuration and one checkpoint; "
            "mean ± standard error over trials; accuracies in %, gap in percentage points to the ceiling "
            "(75 % on ColoredMNIST); ID accuracy on held-out training data no rule selects on.</p>"
            + "".join(tables))


def _test_acc(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per cell, the mean accuracy over its test environments' reported parts."""
    by_cell: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["role"] == "test" and row["part"] == "main":
            by_cell[row["cell"]].append(row["acc"])
    return {cell: sum(accs) / len(accs) for cell, accs in by_cell.items()}


def _search(store: Store, picks: dict[str, list[dict[str, Any]]]) -> str:
    """Test accuracy of every searched configuration against each hyperparameter the search varied, with the
    configuration each rule chose in each trial marked."""
    cells = store.cells("done")
    last = _test_acc(store.results("last"))
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        if cell["key"] in last:
            groups[(*(cell[k] for k in IDENTITY), variant_label(cell["variant"]))].append(cell)
    chosen: dict[tuple, dict[str, list[tuple[dict[str, Any], float]]]] = defaultdict(lambda: defaultdict(list))
    for name, picked in picks.items():
        accs = _test_acc(store.results(RULES[name].checkpoint))
        for pick in picked:
            cell = pick["cell"]
            if cell["key"] in accs:
                chosen[pick["trial"][:-1]][name].append((cell, accs[cell["key"]]))
    figures = []
    for key, members in sorted(groups.items()):
        if len({c["config"] for c in members}) < 2:
            continue
        flat = {c["key"]: {f"{section}.{n}": v for section in ("algorithm", "backbone")
                           for n, v in c["hparams"][section].items()} for c in members}
        varied = sorted(n for n in next(iter(flat.values()))
                        if len({json.dumps(f.get(n)) for f in flat.values()}) > 1)
        label = " · ".join(str(k) for k in key if k)
        for name in varied:
            points = [(flat[c["key"]][name], last[c["key"]], c["seed"]) for c in members]
            marks = {rule: [(flat[c["key"]][name], acc) for c, acc in picks] for rule, picks in chosen[key].items()}
            figures.append(_figure(plots.search_plot(points, marks, name.split(".", 1)[1], label),
                                   f"{label}: test accuracy (last checkpoint) against {name}, "
                                   f"one dot per (configuration, trial); marked: what each rule chose"))
    if not figures:
        return ""
    return f'<h2>Hyperparameter search</h2><div class="figures">{"".join(figures)}</div>'



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


def _time_axes(summary: list[dict[str, Any]], time_keys: dict[str, str]) -> str:
    """Accuracy and worst-group accuracy against the time since programming, per target and test environment:
    every method whose rows sweep that target's time key is one colour."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in summary:
        key = time_keys.get(row["target"])
        if key in row["swept"]:
            groups[(row["dataset"], row["backbone"], row["target"], row["env"], key)].append(row)
    figures = [_figure(plots.time_plot(rows, key, " · ".join(map(str, group[:4]))),
                       f"{'/'.join(map(str, group[:4]))}: accuracy (solid) and worst-group accuracy (dashed) against "
                       f"{key}, mean ± SE over trials")
               for (*group, key), rows in sorted(groups.items()) if len({r["swept"][key] for r in rows}) > 1]
    if not figures:
        return ""
    return f'<h2>Accuracy over time on the hardware</h2><div class="figures">{"".join(figures)}</div>'


def _curves(store: Store) -> str:
    """One figure per training run; the targets deployed from it share it."""
    cells = store.cells()
    by_training: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.curves():
        by_training[row["training"]].append(row)
    first = {}
    for cell in cells:
        first.setdefault(cell["training"], cell)
    variants = {training: ", ".join(filter(None, [variant_label({k: v for k, v in cell["variant"].items()
                                                                  if k not in cell["hparams"]["target"]}),
                                                    f"config {cell['config']}" if cell["config"] else ""]))
                for training, cell in first.items()}
    figures = []
    for training, rows in sorted(by_training.items(), key=lambda item: (
            *(str(first[item[0]][k]) for k in IDENTITY), first[item[0]]["config"], variants[item[0]],
            first[item[0]]["seed"])):
        cell, variant = first[training], variants[training]
        title = f"{cell['dataset']} · {cell['backbone']} · {cell['algorithm']} · seed {cell['seed']}"
        figures.append(_figure(plots.training_curves(rows, title + (f"\n{variant}" if variant else "")),
                               f"{title}{' · ' + variant if variant else ''} (training {training})"))
    if not figures:
        return ""
    return (f"<h2>Training curves</h2><p>Accuracy per epoch: train (the training environments' evaluation "
            f"subsample), val (their validation parts), test (the test environments' reported parts).</p>"
            f'<div class="figures">{"".join(figures)}</div>')


def _configuration(store: Store) -> str:
    cells = store.cells()
    rows = [[*(c[k] for k in IDENTITY), c["seed"], c["config"], c["status"], c["selected"] or "",
             json.dumps(c["hparams"], sort_keys=True)] for c in cells]
    plugins = [[p["kind"], p["name"], p["dist"], p["version"]] for p in store.plugin_versions()]
    return ("<h2>Configuration</h2><h3>Cells and hyperparameters</h3>"
            + _table(rows, [*IDENTITY, "seed", "config", "status", "checkpoint epochs", "hparams"], "cells")
            + "<h3>Plugin versions</h3>" + _table(plugins, ["kind", "name", "distribution", "version"], "plugins")
            + f"<h3>Run metadata</h3><pre>{escape(json.dumps(store.meta(), indent=2, sort_keys=True))}</pre>")


def render_html(store: Store, selections: Sequence[str]) -> str:
    """The whole page; bar chart and sweeps follow the first selection rule."""
    picks = {name: choices(store, name) for name in selections}
    summaries = {name: summarize(store, name, picks[name]) for name in selections}
    primary = summaries[selections[0]]
    meta = store.meta()
    name = (meta.get("matrix") or {}).get("name", store.path.parent.name)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(Counter(store.cell_status().values()).items()))
    body = [f"<h1>oodbench report: {escape(str(name))}</h1>",
            f"<p>Run directory <code>{escape(str(store.path.parent))}</code>; cells: {escape(counts or 'none')}.</p>",
            _leaderboard(summaries),
            _cell_list(store.cells("failed"), "failed cell(s)"),
            _cell_list(store.cells("skipped"), "skipped cell(s)")]
    if primary:
        body.append(f"<h2>Test and worst-group accuracy ({escape(selections[0])})</h2>"
                    + _img(plots.accuracy_bars(primary), "test and worst-group accuracy per method"))
        body.append(_time_axes(primary, meta.get("time_keys", {})))
        body.append(_sweeps(primary))
    body += [_search(store, picks), _curves(store), _configuration(store)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>oodbench report: {escape(str(name))}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>")
