"""Leaderboard baselines: record a run's numbers (``update``) and catch regressions against them (``check``).

A baseline is a JSON file with one entry per reported row (dataset,
backbone, algorithm, target, hyperparameter variant, test environment):
the mean, std and seeds of each tracked metric with the direction that is
better and the tolerance, plus what makes two runs comparable at all: the
harness version, the version of every plugin, the dataset spec hash and a
hash of the cell's full configuration. ``check`` compares in each metric's
own direction, allows for seed noise, and marks entries whose versions or
hashes differ as not comparable instead of passing or failing them.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from oodbench.errors import UsageError
from oodbench.directions import DIRECTIONS
from oodbench.distributions import finite_number
from oodbench.report import IDENTITY, open_store, scale, summarize
from oodbench.selection import RULES
from oodbench.store import Store

SCHEMA = 2
"""2: values are chosen per trial over (configuration, checkpoint), with the new splits (docs/protocol.md)."""
TRACKED = ("acc", "worst_group_acc", "gap")
"""Metrics a baseline records: test accuracy, worst-group accuracy (higher is better), gap to the ceiling (lower)."""
KEY = (*IDENTITY, "hparams", "env")
DEFAULT_TOLERANCE_PP = 2.0
STD_FACTOR = 2.0
"""A move counts only beyond max(tolerance, STD_FACTOR x the std of either side: over seeds, and for a baseline
also over its replicate runs)."""
SHOWN_PP = 0.05
"""Changes smaller than this (rounding) are not listed as moves."""
FAILING = ("regressed", "missing")


def _better(metric: str) -> str:
    return "higher" if DIRECTIONS[metric] == "max" else "lower"


def config_hash(hparams: Iterable[dict[str, Any]]) -> str:
    """A short hash of the full hyperparameters (training budget included) of an entry's cells: a baseline
    recorded under another configuration is not comparable."""
    texts = sorted({json.dumps(h, sort_keys=True) for h in hparams})
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def _plugin_versions(keys: Iterable[str], plugins: dict[str, dict[str, dict[str, str]]]) -> dict[str, str]:
    """Per kind, ``dist version`` of the plugin the entry's cells ran (a comma list if they ever differ)."""
    versions: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        for kind, plugin in plugins.get(key, {}).items():
            versions[kind].add(f"{plugin['dist']} {plugin['version']}")
    return {kind: ", ".join(sorted(found)) for kind, found in sorted(versions.items())}


def entries(store: Store, selection: str, tolerance_pp: float) -> list[dict[str, Any]]:
    """The baseline entries of a run: every summary row with its tracked metrics and comparability keys."""
    meta = store.meta()
    harness = meta.get("versions", {}).get("oodbench", "unknown")
    specs = meta.get("dataset_specs", {})
    cells = {c["key"]: c for c in store.cells("done")}
    plugins = store.cell_plugins()
    out = []
    for row in summarize(store, selection):
        members = [cells[key] for key in row["candidates"]]  # every searched configuration: the search, not its pick
        entry: dict[str, Any] = {k: row[k] for k in KEY}
        entry |= {
            "seeds": row["seeds"],
            "harness": harness,
            "plugins": _plugin_versions(row["cells"], plugins),
            "spec_hash": specs.get(row["dataset"]),
            "config_hash": config_hash(c["hparams"] for c in members),
            "metrics": {m: {"value": round(row[m].mean * scale(m), 4), "std": round(row[m].std * scale(m), 4),
                            "unit": "pp" if m == "gap" else "%", "better": _better(m),
                            "tolerance": round(max(tolerance_pp, STD_FACTOR * row[m].std * scale(m)), 4)}
                        for m in TRACKED},
        }
        out.append(entry)
    return out


def _kept_tolerance(baseline: Path) -> float:
    """The tolerance floor of the baseline being replaced; the default when there is none (or it is unreadable,
    which is what an update repairs)."""
    try:
        return load(baseline)["tolerance_pp"]
    except UsageError:
        return DEFAULT_TOLERANCE_PP


def _merge(runs: dict[Path, list[dict[str, Any]]], tolerance_pp: float) -> list[dict[str, Any]]:
    """One entry per row over replicate runs of the same matrix: the mean value, and as std the larger of the
    seed std and the spread between runs, so a cell whose numbers move with the thread count or the machine
    gets the tolerance it needs."""
    merged: dict[tuple, list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    for run_dir, rows in runs.items():
        for row in rows:
            merged[tuple(row[k] for k in KEY)].append((run_dir, row))
    out = []
    for members in merged.values():
        (base_dir, base), *others = members
        for run_dir, other in others:
            reason = _incomparable(base, other)
            if reason:
                raise UsageError(f"{run_dir}: {_label(other)} is not a replicate of {base_dir} ({reason})")
        entry = {k: v for k, v in base.items() if k != "metrics"} | {"runs": len(members), "metrics": {}}
        for metric, first in base["metrics"].items():
            values = [row["metrics"][metric]["value"] for _, row in members]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            std = max(spread, *(row["metrics"][metric]["std"] for _, row in members))
            entry["metrics"][metric] = first | {
                "value": round(sum(values) / len(values), 4), "std": round(std, 4),
                "tolerance": round(max(tolerance_pp, STD_FACTOR * std), 4)}
        out.append(entry)
    return out


def update(run_dirs: Path | list[Path], baseline: Path, selection: str = "val",
           tolerance_pp: float | None = None) -> str:
    """Rewrite ``baseline`` from a run, or from replicate runs of one matrix (merged by ``_merge``); the
    tolerance floor of an existing baseline is kept unless given."""
    if selection not in RULES:
        raise UsageError(f"--selection {selection!r}: unknown (allowed: {', '.join(RULES)})")
    if tolerance_pp is None:
        tolerance_pp = _kept_tolerance(baseline)
    run_dirs = [run_dirs] if isinstance(run_dirs, Path) else list(run_dirs)
    runs, failed = {}, []
    for run_dir in run_dirs:
        with open_store(run_dir) as store:
            runs[run_dir] = entries(store, selection, tolerance_pp)
            failed += store.cells("failed")
            if run_dir == run_dirs[0]:
                meta = store.meta()
    rows = _merge(runs, tolerance_pp)
    if not rows:
        raise UsageError(f"{run_dirs[0]}: no finished cells to record in {baseline}")
    data = {"schema": SCHEMA, "selection": selection, "tolerance_pp": tolerance_pp,
            "run": {k: meta.get(k) for k in ("argv", "created_at", "versions")} | {
                "matrix": (meta.get("matrix") or {}).get("name")},
            "replicates": [str(d) for d in run_dirs],
            "entries": rows}
    baseline.parent.mkdir(parents=True, exist_ok=True)
    baseline.write_text(json.dumps(data, indent=2) + "\n")
    note = f"; {len(failed)} failed cell(s) not recorded" if failed else ""
    over = f" over {len(run_dirs)} replicate runs" if len(run_dirs) > 1 else ""
    return (f"wrote {baseline}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'} under selection {selection}"
            f"{over}{note}")


def _fail(path: Path, where: str, problem: str) -> UsageError:
    return UsageError(f"{path}: {where} {problem} (regenerate it with: oodbench leaderboard update RUN_DIR "
                      f"--baseline {path})")


def load(path: Path) -> dict[str, Any]:
    """Read and validate a baseline; every problem is one line naming the file and the field."""
    if not path.is_file():
        raise UsageError(f"--baseline {path}: no such file (create it with: oodbench leaderboard update RUN_DIR "
                         f"--baseline {path})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _fail(path, "'schema'", f"must be {SCHEMA}")
    if data.get("selection") not in RULES:
        raise _fail(path, "'selection'", f"is {data.get('selection')!r} (allowed: {', '.join(RULES)})")
    if not _number(data.get("tolerance_pp"), minimum=0.0):
        raise _fail(path, "'tolerance_pp'", f"is {data.get('tolerance_pp')!r}: must be a finite number >= 0")
    if not isinstance(data.get("entries"), list):
        raise _fail(path, "'entries'", "must be a list")
    for i, entry in enumerate(data["entries"]):
        _check_entry(path, f"entries[{i}]", entry)
    return data


def _number(value: Any, minimum: float | None = None) -> bool:
    """A finite JSON number (not a bool) at or above ``minimum``: NaN compares false with everything, so a NaN
    baseline would pass every check."""
    return finite_number(value) and (minimum is None or value >= minimum)


def _check_entry(path: Path, where: str, entry: Any) -> None:
    fields = (*KEY, "seeds", "harness", "plugins", "spec_hash", "config_hash", "metrics")
    if not isinstance(entry, dict) or any(k not in entry for k in fields):
        raise _fail(path, where, f"lacks a field (expected: {', '.join(fields)})")
    if not isinstance(entry["metrics"], dict):
        raise _fail(path, f"{where}.metrics", "must be a table of metric -> value, std, better, tolerance")
    for metric, values in entry["metrics"].items():
        if metric not in DIRECTIONS:
            raise _fail(path, f"{where}.metrics.{metric}", f"is not a metric (allowed: {', '.join(DIRECTIONS)})")
        for name, minimum in (("value", None), ("std", 0.0), ("tolerance", 0.0)):
            if not isinstance(values, dict) or not _number(values.get(name), minimum):
                bound = "" if minimum is None else f" >= {minimum:g}"
                got = values.get(name) if isinstance(values, dict) else values
                raise _fail(path, f"{where}.metrics.{metric}.{name}", f"is {got!r}: must be a finite number{bound}")
        if values.get("better") != _better(metric):
            raise _fail(path, f"{where}.metrics.{metric}.better", f"must be {_better(metric)!r} for {metric}")


@dataclass
class Move:
    """One (entry, metric) of a check."""

    entry: str
    metric: str
    baseline: float | None
    current: float | None
    allowed: float | None
    status: str
    note: str = ""

    def row(self) -> list[str]:
        def number(value: float | None, signed: bool = False) -> str:
            return "-" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"

        change = None if self.baseline is None or self.current is None else self.current - self.baseline
        return [self.entry, self.metric, number(self.baseline), number(self.current), number(change, signed=True),
                number(self.allowed), self.status, self.note]

    def moved(self) -> bool:
        if self.status != "ok":
            return True
        return abs((self.current or 0.0) - (self.baseline or 0.0)) >= SHOWN_PP


def _label(entry: dict[str, Any]) -> str:
    return "/".join(str(entry[k]) for k in KEY if entry[k])


def _incomparable(base: dict[str, Any], now: dict[str, Any]) -> str:
    """Why two entries cannot be compared, or an empty string."""
    reasons = []
    if base["harness"] != now["harness"]:
        reasons.append(f"oodbench {base['harness']} -> {now['harness']}")
    for kind in sorted(set(base["plugins"]) | set(now["plugins"])):
        if base["plugins"].get(kind) != now["plugins"].get(kind):
            reasons.append(f"{kind} {base['plugins'].get(kind)} -> {now['plugins'].get(kind)}")
    if base["spec_hash"] != now["spec_hash"]:
        reasons.append(f"dataset spec {str(base['spec_hash'])[:12]} -> {str(now['spec_hash'])[:12]}")
    if base["config_hash"] != now["config_hash"]:
        reasons.append("hyperparameters or budget changed")
    return "; ".join(reasons)


def _compare(base: dict[str, Any], now: dict[str, Any], floor: float | None) -> list[Move]:
    label, reason = _label(base), _incomparable(base, now)
    seeds = "" if base["seeds"] == now["seeds"] else f"seeds {base['seeds']} -> {now['seeds']}"
    moves = []
    for metric, old in base["metrics"].items():
        new = now["metrics"].get(metric)
        if new is None:
            moves.append(Move(label, metric, old["value"], None, None, "missing", "metric not in the run"))
            continue
        if reason:
            moves.append(Move(label, metric, old["value"], new["value"], None, "not comparable", reason))
            continue
        allowed = max(old["tolerance"] if floor is None else floor, STD_FACTOR * old["std"], STD_FACTOR * new["std"])
        gain = (new["value"] - old["value"]) * (1 if old["better"] == "higher" else -1)
        status = "regressed" if gain < -allowed else "improved" if gain > allowed else "ok"
        moves.append(Move(label, metric, old["value"], new["value"], allowed, status, seeds))
    return moves


@dataclass
class CheckResult:
    text: str
    failed: bool


def check(run_dir: Path, baseline: Path, tolerance_pp: float | None = None) -> CheckResult:
    """Compare a run with a baseline; ``failed`` when a metric regressed or a baseline entry is missing."""
    if tolerance_pp is not None and (not math.isfinite(tolerance_pp) or tolerance_pp < 0):
        raise UsageError(f"--tolerance {tolerance_pp}: expected percentage points >= 0")
    data = load(baseline)
    with open_store(run_dir) as store:
        current = {tuple(e[k] for k in KEY): e for e in entries(store, data["selection"], DEFAULT_TOLERANCE_PP)}
    moves: list[Move] = []
    seen = set()
    for base in data["entries"]:
        key = tuple(base[k] for k in KEY)
        seen.add(key)
        if key in current:
            moves += _compare(base, current[key], tolerance_pp)
        else:
            moves += [Move(_label(base), m, v["value"], None, None, "missing", "not in the run (failed or not run)")
                      for m, v in base["metrics"].items()]
    for key, entry in current.items():
        if key not in seen:
            moves += [Move(_label(entry), m, None, v["value"], None, "new", "not in the baseline")
                      for m, v in entry["metrics"].items()]
    counts = {status: sum(m.status == status for m in moves)
              for status in ("regressed", "missing", "improved", "ok", "not comparable", "new")}
    shown = [m.row() for m in moves if m.moved()]
    lines = [(f"leaderboard check of {run_dir} against {baseline} (selection {data['selection']}; "
              f"values in % and pp; allowed = max(tolerance, {STD_FACTOR:g} x std over seeds and replicate runs))")]
    if shown:
        lines += ["", tabulate(shown, headers=["entry", "metric", "baseline", "run", "change", "allowed", "status",
                                               "note"], disable_numparse=True)]
    else:
        lines.append(f"nothing moved by {SHOWN_PP} pp or more")
    lines += ["", "; ".join(f"{n} {status}" for status, n in counts.items()) + f" (of {len(moves)} metric values)"]
    failed = any(m.status in FAILING for m in moves)
    lines.append("FAILED: a metric regressed or an entry is missing" if failed else "passed")
    return CheckResult("\n".join(lines), failed)
