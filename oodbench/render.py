"""A run's report in each format: table, markdown, latex, json, csv (here) and html (``html_report``).

Every format shows the same summary rows (``report.summarize``), one table per
selection rule, followed by the failed, skipped and still pending cells.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from oodbench.errors import UsageError
from oodbench.report import DRAW_SPREADS, IDENTITY, METRICS, Stat, rule_heading, rule_table, summarize
from oodbench.selection import RULES
from oodbench.store import Store

FORMATS = ("table", "markdown", "latex", "json", "csv", "html")


def _stat_dict(stat: Stat | None) -> dict[str, float] | None:
    return None if stat is None else {"mean": stat.mean, "std": stat.std, "se": stat.se, "n": stat.n}


def side_by_side(store: Store, selections: Sequence[str]) -> list[dict[str, Any]]:
    """Summary rows of several selection rules, each identity's rules next to each other in the given order."""
    order = {name: i for i, name in enumerate(selections)}
    return sorted((row for name in selections for row in summarize(store, name)),
                  key=lambda r: (*(r[k] for k in (*IDENTITY, "hparams", "env")), order[r["selection"]]))


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "±": r"$\pm$"}


def _latex(selection: str, summary: list[dict[str, Any]]) -> str:
    """A booktabs ``table`` for a paper; tabulate escapes the cells, the caption is escaped here alike."""
    caption, headers, rows = rule_table(summary)
    body = tabulate(rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True).replace("±", r"$\pm$")
    text = rule_heading(selection, summary) + (f"; {caption}" if caption else "")
    text = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return "\n".join([r"\begin{table}[t]", r"\centering", body, rf"\caption{{{text}}}",
                      rf"\label{{tab:oodbench-{selection.replace('_', '-')}}}", r"\end{table}"])


def _cell_label(c: dict[str, Any]) -> str:
    """``dataset/backbone/algorithm/target/seedN[/configK]`` of a stored cell."""
    return "/".join(str(c[k]) for k in IDENTITY) + f"/seed{c['seed']}" + (f"/config{c['config']}" if c["config"] else "")


def _cell_lines(cells: list[dict[str, Any]], title: str) -> list[str]:
    if not cells:
        return []
    return ["", f"{len(cells)} {title}:"] + [f"  {_cell_label(c)}: {c['error']}" for c in cells]


def render(store: Store, fmt: str, selections: str | Sequence[str]) -> str:
    """The report of a run in ``fmt``: one table per selection rule (long rows in json and csv)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: unknown (allowed: {', '.join(FORMATS)})")
    selections = [selections] if isinstance(selections, str) else list(selections)
    if fmt == "html":
        from oodbench.html_report import render_html

        return render_html(store, selections)
    failed, skipped = store.cells("failed"), store.cells("skipped")
    if fmt == "json":
        summary = side_by_side(store, selections)
        return json.dumps({
            "selections": selections, "selection_rules": {name: RULES[name].description for name in selections},
            "statistic": "mean, sample std and standard error (se) over trials; draw_sd_*: each trial's sample std over "
                         "its device draws (stochastic targets), with their mean, std and se over trials",
            "rows": [{**{k: r[k] for k in (*IDENTITY, "hparams", "env", "selection", "seeds", "configs", "epochs",
                                           "searched")},
                      **{m: _stat_dict(r[m]) for m in METRICS}, "draws": r["draws"],
                      **{k: _stat_dict(r[k]) for k in DRAW_SPREADS}} for r in summary],
            "failed": [{k: c[k] for k in (*IDENTITY, "seed", "config", "error")} for c in failed],
            "skipped": [{k: c[k] for k in (*IDENTITY, "seed", "config", "error")} for c in skipped],
            "pending": [{k: c[k] for k in (*IDENTITY, "seed", "config")} for c in store.cells("pending")],
            "meta": store.meta(), "plugins": store.plugin_versions(),
        }, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*IDENTITY, "hparams", "env", "selection", "seeds", "configs", "searched",
                         *(f"{m}_{s}" for m in METRICS for s in ("mean", "std", "se", "n")), "draws",
                         *(f"{k}_mean" for k in DRAW_SPREADS)])
        for r in side_by_side(store, selections):
            stats = [v for m in METRICS for v in ((r[m].mean, r[m].std, r[m].se, r[m].n) if r[m] else ("",) * 4)]
            writer.writerow([*(r[k] for k in IDENTITY), r["hparams"], r["env"], r["selection"],
                             " ".join(map(str, r["seeds"])), " ".join(map(str, r["configs"])), r["searched"], *stats,
                             " ".join(map(str, r["draws"])), *(r[k].mean if r[k] else "" for k in DRAW_SPREADS)])
        return out.getvalue()
    blocks = []
    for selection in selections:
        summary = summarize(store, selection)
        if fmt == "latex":
            blocks.append(_latex(selection, summary))
            continue
        caption, headers, rows = rule_table(summary)
        table = tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                         disable_numparse=True)
        blocks.append("\n".join([rule_heading(selection, summary) + (f"; {caption}" if caption else ""), "", table]))
    lines = ["\n\n".join(blocks)]
    lines += _cell_lines(failed, "failed cell(s)") + _cell_lines(skipped, "skipped cell(s)")
    lines += _pending_line(store)
    return "\n".join(lines) if fmt != "latex" else lines[0]


def _pending_line(store: Store) -> list[str]:
    """A run still going (or interrupted) says so: its table is not the whole matrix yet."""
    statuses = list(store.cell_status().values())
    pending = statuses.count("pending")
    if not pending:
        return []
    return ["", f"{pending} of {len(statuses)} cells still pending: the run is in progress or was interrupted "
                f"(oodbench run --out RUN_DIR --resume finishes it)"]


def failed_report(store: Store) -> str:
    """Every failed cell with its one-line error and, where the store has it, the full traceback."""
    failed = store.cells("failed")
    if not failed:
        return "no failed cells"
    tracebacks = store.tracebacks()
    blocks = [f"{len(failed)} failed cell(s)"]
    for c in failed:
        full = tracebacks.get(c["key"], "(no traceback: the worker running it died)\n")
        blocks.append(f"== {_cell_label(c)} (cell {c['key'][:8]}): {c['error']}\n{full.rstrip()}")
    return "\n\n".join(blocks)
