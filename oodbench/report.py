"""Reports rendered from the store: per selection rule, one row per (dataset, backbone, algorithm, target, sweep
variant) and test environment, aggregated over trials.

Within each trial a rule (``selection.RULES``) picks one searched
configuration and one checkpoint; the row is mean ± standard error over
trials of what the picked networks score on the test environments' reported
parts, with ID accuracy from the training environments' ``idtest`` parts,
which no rule selects on. The sample std stays in the json and csv exports.
Accuracies print in percent, ``gap`` in percentage points to the
environment's ceiling (75 % on ColoredMNIST). This module builds the rows and
one rule's table (DomainBed's shape: rows = methods, columns = test
environments); ``render`` turns them into each format, ``html_report`` into a page.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodbench.errors import UsageError
from oodbench.selection import RULES, Candidate, choose
from oodbench.store import STORE_NAME, Store

METRICS = ("acc", "gap", "worst_group_acc", "avg_group_acc", "id_acc")
HEADERS = {"acc": "acc %", "gap": "gap pp", "worst_group_acc": "worst-group %", "avg_group_acc": "avg-group %",
           "id_acc": "ID acc %"}
DRAW_HEADERS = {"acc": "acc sd over draws %", "worst_group_acc": "worst-group sd over draws %"}
"""A stochastic target's spread between chips of the same trained network: each trial's sample std over its
device draws, averaged over trials (the ± beside the means is over trials)."""
DRAW_SPREADS = ("draw_sd_acc", "draw_sd_worst_group_acc")
IDENTITY = ("dataset", "backbone", "algorithm", "target")


@dataclass
class Stat:
    """Mean, sample std and count of one metric over trials; ``se`` is the standard error of the mean."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = ()
    """The trials' own values, in the row's ``seeds`` order (the leaderboard keeps them per seed)."""

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values),
                   tuple(values))

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n)

    def text(self, scale: float) -> str:
        if self.n == 1:
            return f"{self.mean * scale:.1f}"
        return f"{self.mean * scale:.1f} ± {self.se * scale:.1f}"


def open_store(run_dir: Path) -> Store:
    if not (Path(run_dir) / STORE_NAME).is_file():
        raise UsageError(f"{run_dir}: not a run directory (no {STORE_NAME})")
    return Store.in_dir(run_dir, readonly=True)


def variant_label(variant: dict[str, Any]) -> str:
    """The ``hparams`` column of a user sweep's row, e.g. ``lr=0.001``."""
    return ", ".join(f"{n}={v}" for n, v in sorted(variant.items()))


def _curve_index(store: Store) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, dict[str, tuple[str, str]]]]:
    """Per training: accuracy per epoch and split, and each split's (role, part)."""
    accs: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    roles: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for row in store.curves():
        accs[row["training"]][row["epoch"]][row["split"]] = row["acc"]
        roles[row["training"]][row["split"]] = (row["role"], row["part"])
    return accs, roles


def choices(store: Store, selection: str) -> list[dict[str, Any]]:
    """What ``selection`` picked in every trial: per (identity, variant, trial), the chosen cell, its
    configuration and epoch, the score it won with and how many configurations it was chosen from."""
    if selection not in RULES:
        raise UsageError(f"--selection {selection!r}: unknown (allowed: {', '.join(RULES)})")
    rule = RULES[selection]
    accs, roles = _curve_index(store)
    trainings = store.trainings()
    trials: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for cell in store.cells("done"):
        if cell["training"] in trainings:
            trials[(*(cell[k] for k in IDENTITY), variant_label(cell["variant"]), cell["seed"])].append(cell)
    picked = []
    for key, cells in sorted(trials.items()):
        candidates = [Candidate(c["config"], c["key"], trainings[c["training"]], accs[c["training"]],
                                roles[c["training"]]) for c in cells]
        choice = choose(rule, candidates)
        if choice is None:
            continue
        cell = next(c for c in cells if c["key"] == choice.candidate.key)
        picked.append({"trial": key, "cell": cell, "config": choice.candidate.config, "epoch": choice.epoch,
                       "score": choice.score, "configs": len(cells), "candidates": [c["key"] for c in cells]})
    return picked


def summarize(store: Store, selection: str, picked: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Aggregate the picked networks' results over trials for every test environment; ``picked`` is
    ``choices(store, selection)`` when the caller already has it."""
    picked = choices(store, selection) if picked is None else picked
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.results(RULES[selection].checkpoint):
        results[row["cell"]].append(row)
    draws = store.draws(RULES[selection].checkpoint)
    groups: dict[tuple, list[tuple[dict[str, Any], dict[str, Any], float | None]]] = defaultdict(list)
    for pick in picked:
        rows = results[pick["cell"]["key"]]
        ids = [r["acc"] for r in rows if r["role"] == "train" and r["part"] == "idtest"]
        id_acc = statistics.fmean(ids) if ids else None
        for row in rows:
            if row["role"] == "test" and row["part"] == "main":
                groups[(*pick["trial"][:-1], row["env"])].append((pick, row, id_acc))
    summary = []
    for key in sorted(groups):
        members = groups[key]
        row: dict[str, Any] = dict(zip((*IDENTITY, "hparams", "env"), key))
        row["selection"] = selection
        row["seeds"] = [pick["cell"]["seed"] for pick, _, _ in members]
        row["cells"] = [pick["cell"]["key"] for pick, _, _ in members]
        row["candidates"] = sorted(key for pick, _, _ in members for key in pick["candidates"])
        row["configs"] = [pick["config"] for pick, _, _ in members]
        row["epochs"] = [pick["epoch"] for pick, _, _ in members]
        row["searched"] = max(pick["configs"] for pick, _, _ in members)
        row["swept"] = members[0][0]["cell"]["variant"]
        row["ceiling"] = members[0][1]["ceiling"]
        for metric in METRICS[:4]:
            row[metric] = Stat.of([r[metric] for _, r, _ in members])
        ids = [id_acc for _, _, id_acc in members if id_acc is not None]
        row["id_acc"] = Stat.of(ids) if ids else None
        per_trial = [draws.get((pick["cell"]["key"], r["split"]), []) for pick, r, _ in members]
        row["draws"] = [len(d) for d in per_trial]
        for metric in ("acc", "worst_group_acc"):
            spreads = [statistics.stdev(d[metric] for d in trial) for trial in per_trial if len(trial) > 1]
            row[f"draw_sd_{metric}"] = Stat.of(spreads) if spreads else None
        summary.append(row)
    return summary


def scale(metric: str) -> float:
    """Stored fractions print in percent; ``gap`` is stored in percentage points already."""
    return 1.0 if metric == "gap" else 100.0


def _text(stat: Stat | None, metric: str) -> str:
    return stat.text(scale(metric)) if stat else "-"


def _spread(stat: Stat | None) -> str:
    """Mean over trials of each trial's std over its draws, in percent."""
    return f"{stat.mean * 100:.1f}" if stat else "-"


def _draw_count(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def rule_table(summary: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    """One rule's table in DomainBed's shape: a row per method (and sweep variant), a column group per test
    environment; identity columns that are the same on every row move into the returned caption."""
    envs = list(dict.fromkeys(r["env"] for r in summary))
    varying = [k for k in IDENTITY if k == "algorithm" or len({r[k] for r in summary}) > 1]
    constant = [str(summary[0][k]) for k in IDENTITY if k not in varying] if summary else []
    show_variant = any(r["hparams"] for r in summary)
    per_env = ("acc", "gap", "worst_group_acc", "avg_group_acc") if len(envs) == 1 else ("acc", "worst_group_acc")
    drawn = [m for m in ("acc", "worst_group_acc") if any(r[f"draw_sd_{m}"] for r in summary)]
    headers = [*varying, *(["hparams"] if show_variant else []),
               *(f"{env} {HEADERS[m]}" if len(envs) > 1 else HEADERS[m] for env in envs for m in per_env),
               *(f"{env} {DRAW_HEADERS[m]}" if len(envs) > 1 else DRAW_HEADERS[m] for env in envs for m in drawn),
               HEADERS["id_acc"], "n", *(["draws"] if drawn else []), "configs"]
    rows: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in summary:
        rows[(*(r[k] for k in varying), r["hparams"])][r["env"]] = r
    out = []
    for key, by_env in rows.items():
        first = next(iter(by_env.values()))
        cells = [_text(by_env[env][m], m) if env in by_env else "-" for env in envs for m in per_env]
        spreads = [_spread(by_env[env][f"draw_sd_{m}"]) if env in by_env else "-" for env in envs for m in drawn]
        out.append([*key[:len(varying)], *([key[-1] or "-"] if show_variant else []), *cells, *spreads,
                    _text(first["id_acc"], "id_acc"), str(len(first["seeds"])),
                    *([_draw_count(first["draws"])] if drawn else []), str(first["searched"])])
    return " · ".join(constant), headers, out


def rule_heading(selection: str, summary: list[dict[str, Any]]) -> str:
    """What a rule's table shows, in words: the rule, the statistic and the trial count."""
    counts = sorted({len(r["seeds"]) for r in summary})
    n = ", ".join(map(str, counts)) or "0"
    heading = f"selection {selection}: {RULES[selection].description}; mean ± SE over trials (n = {n})"
    if any(r["draw_sd_acc"] for r in summary):
        heading += ("; a stochastic target's row is each trial's mean over its device draws, its sd over draws "
                    "the trials' mean std between chips")
    return heading
