"""Leaderboard baselines: record a run's numbers per seed (``update``) and flag what moved beyond them (``check``).

A baseline is a JSON file with one entry per reported row and selection rule
(dataset, backbone, algorithm, target, hyperparameter variant, test
environment, rule): every seed's value of each guarded metric in every
replicate run it was recorded from, the direction that is better, and what
makes two runs comparable at all (the harness version, the version of every
plugin, the dataset spec hash and a hash of the cell's full configuration).

``check`` asks of each (entry, metric) whether the run's mean over its seeds
is what the baseline allows. When the run's seeds are the baseline's and some
were recorded in several replicate runs (other thread counts, executors), the
run is compared with the recorded mean of the same seeds, within a t interval
from the spread between replicates (``paired_half_width``): the same seed
differs only by numerical noise, on a machine whose kernels round as the
recording machine's did. So the samples are kept per ``oodbench.numerics``
fingerprint, and a run is paired with the samples of its own fingerprint (on
a kind of CPU the baseline has not seen, a chaotic row moves like a new
seed; ``update --add`` records another kind beside the others). Otherwise it is a two-sided prediction
interval for the mean of m new seeds from the n recorded,
``mean ± t(n-1) · s · sqrt(1/m + 1/n)`` (``half_width``). Both never narrower
than a floor; docs/reports.md says why. A move out of it either way fails: a
broken simulation can look better (a crossbar without its non-idealities), so
an improvement is a change to confirm by refreshing the baseline, not a pass. Rows of a hardware
target are guarded as the paired difference to the float network of the same
training (seed by seed), so what the target measures is its own effect, not
the training's noise.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from oodbench.directions import DIRECTIONS
from oodbench.distributions import finite_number
from oodbench.errors import UsageError
from oodbench.report import IDENTITY, open_store, scale, summarize
from oodbench.selection import RULES
from oodbench.store import Store

SCHEMA = 5
"""5: every seed's value per replicate run and per numerics fingerprint of the machine that recorded it, per
guarded rule; two-sided prediction intervals (docs/reports.md)."""
GUARDED = ("acc", "worst_group_acc")
"""Guarded metrics. ``gap`` is the ceiling minus ``acc`` on the same test set: guarding both would count one
move twice."""
KEY = (*IDENTITY, "hparams", "env", "selection")
PAIRED_WITH = "float"
"""A hardware target's rows are guarded as their difference to this target's row of the same training."""
DEFAULT_CONFIDENCE = 0.99
DEFAULT_FLOOR_PP = 0.5
"""The narrowest interval half-width, in percentage points: a cell whose recorded seeds all agree (a
deterministic row) still allows for rounding and for a machine whose kernels sum in another order."""
SHOWN_PP = 0.05
"""Changes smaller than this (rounding) are not listed as moves."""
FAILING = ("regressed", "improved", "missing")
UNKNOWN_NUMERICS = "unknown"
"""The fingerprint key of a run recorded before runs recorded one."""


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


def _per_seed(row: dict[str, Any], metric: str) -> dict[int, float]:
    return {seed: value * scale(metric) for seed, value in zip(row["seeds"], row[metric].values)}


def _paired(rows: list[dict[str, Any]]) -> list[tuple[dict[str, dict[int, float]], str | None]]:
    """Each row's per-seed guarded values and what they are relative to, in ``rows`` order: a target row's are
    its values minus the float row's of the same training, seed by seed (its own when there is no float row)."""
    training = ("dataset", "backbone", "algorithm", "hparams", "env")
    floats = {tuple(r[k] for k in training): r for r in rows if r["target"] == PAIRED_WITH}
    out = []
    for row in rows:
        values = {m: _per_seed(row, m) for m in GUARDED}
        partner = floats.get(tuple(row[k] for k in training))
        if row["target"] == PAIRED_WITH or partner is None:
            out.append((values, None))
            continue
        for metric in GUARDED:
            reference = _per_seed(partner, metric)
            values[metric] = {s: v - reference[s] for s, v in values[metric].items() if s in reference}
        out.append((values, PAIRED_WITH))
    return out


def entries(store: Store, selections: Sequence[str]) -> list[dict[str, Any]]:
    """The baseline entries of one run: a row per rule with every seed's guarded values, under the run's numerics
    fingerprint, and comparability keys."""
    meta = store.meta()
    numerics = _numerics(meta)
    harness = meta.get("versions", {}).get("oodbench", "unknown")
    specs = meta.get("dataset_specs", {})
    cells = {c["key"]: c for c in store.cells("done")}
    plugins = store.cell_plugins()
    out = []
    for selection in selections:
        rows = summarize(store, selection)
        for row, (values, vs) in zip(rows, _paired(rows)):
            members = [cells[key] for key in row["candidates"]]  # every searched configuration: the search
            entry: dict[str, Any] = {k: row[k] for k in KEY}
            entry |= {
                "seeds": sorted(row["seeds"]),
                "harness": harness,
                "plugins": _plugin_versions(row["cells"], plugins),
                "spec_hash": specs.get(row["dataset"]),
                "config_hash": config_hash(c["hparams"] for c in members),
                "metrics": {m: {"better": _better(m), "unit": "pp" if vs else "%", "vs": vs,
                                "samples": {numerics: {str(s): [round(v, 4)] for s, v in sorted(values[m].items())}}}
                            for m in GUARDED},
            }
            out.append(entry)
    return out


Samples = dict[str, dict[str, list[float]]]
"""A metric's recorded values: numerics fingerprint -> seed -> its value in every replicate run."""


def _samples(samples: Samples) -> list[float]:
    """Every recorded value: all fingerprints, seeds and replicate runs."""
    return [v for by_seed in samples.values() for values in by_seed.values() for v in values]


def _by_seed(samples: Samples) -> dict[str, list[float]]:
    """Each seed's values on every kind of CPU: another kind's rounding moves a seed as a replicate run does."""
    pooled: dict[str, list[float]] = defaultdict(list)
    for by_seed in samples.values():
        for seed, values in by_seed.items():
            pooled[seed] += values
    return dict(pooled)


def _fingerprints(rows: list[dict[str, Any]]) -> set[str]:
    """The numerics fingerprints that entries' samples were recorded under."""
    return {fp for row in rows for recorded in row["metrics"].values() for fp in recorded["samples"]}


def _sorted(samples: Samples) -> Samples:
    return {fp: dict(sorted(by_seed.items(), key=lambda kv: int(kv[0]))) for fp, by_seed in sorted(samples.items())}


def _merge(runs: dict[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per row over replicate runs of the same matrix: each seed's values from every run, side by
    side, so the spread a thread count or an executor causes is part of what the baseline allows."""
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
        entry["seeds"] = sorted({s for _, row in members for s in row["seeds"]})
        for metric, first in base["metrics"].items():
            samples: Samples = defaultdict(lambda: defaultdict(list))
            for _, row in members:
                for fp, by_seed in row["metrics"][metric]["samples"].items():
                    for seed, values in by_seed.items():
                        samples[fp][seed] += values
            entry["metrics"][metric] = _summarized(first, samples)
        out.append(entry)
    return out


def _summarized(recorded: dict[str, Any], samples: Samples) -> dict[str, Any]:
    """``recorded`` with ``samples`` and their mean and std over every value."""
    values = _samples(samples)
    return recorded | {"samples": _sorted(samples), "mean": round(statistics.fmean(values), 4),
                       "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def _added(rows: list[dict[str, Any]], baseline: Path, rules: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` beside what ``baseline`` recorded on other kinds of CPU (the new runs' kind must not be there): an
    entry's samples are kept where the entry is comparable (same versions, data and configuration), entries the
    new runs lack are kept whole. Also the baseline's replicate runs."""
    data = load(baseline)
    if data["selections"] != rules:
        raise UsageError(f"{baseline}: 'selections' is {data['selections']} but --selection is {','.join(rules)} "
                         f"(--add keeps the baseline's rules)")
    again = sorted(_fingerprints(rows) & set(data["numerics"]))
    if again:
        raise UsageError(f"{baseline}: already holds numerics fingerprint {', '.join(again)} (--add records another "
                         f"kind of CPU; a plain update re-records)")
    old = {tuple(e[k] for k in KEY): e for e in data["entries"]}
    out = []
    for row in rows:
        before = old.pop(tuple(row[k] for k in KEY), None)
        if before is None or _incomparable(before, row):
            out.append(row)
            continue
        for metric, recorded in row["metrics"].items():
            kept = {fp: s for fp, s in before["metrics"][metric]["samples"].items() if fp not in recorded["samples"]}
            row["metrics"][metric] = _summarized(recorded, kept | recorded["samples"])
        row["seeds"] = sorted(set(row["seeds"]) | set(before["seeds"]))
        row["runs"] += before["runs"]
        out.append(row)
    return out + list(old.values()), data["replicates"]


def _rules(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RULES]
    if unknown or not names:
        raise UsageError(f"--selection {text!r}: unknown rule (allowed: {', '.join(RULES)}, comma-separated)")
    return list(dict.fromkeys(names))


def update(run_dirs: Path | list[Path], baseline: Path, selection: str = "val", floor_pp: float | None = None,
           confidence: float | None = None, add: bool = False) -> str:
    """Rewrite ``baseline`` from a run, or from replicate runs of one matrix (``_merge``), under each rule of
    the comma list ``selection``; the floor and confidence of an existing baseline are kept unless given.

    ``add``: keep what the baseline recorded on other kinds of CPU (``_added``), to record this kind beside
    them without a change to the code; after an intended change a plain update starts afresh, since samples
    of the old code on another machine would fail a correct run there.
    """
    rules = _rules(selection)
    kept = _kept_settings(baseline)
    floor_pp = kept["floor_pp"] if floor_pp is None else floor_pp
    confidence = kept["confidence"] if confidence is None else _confidence(confidence)
    run_dirs = [run_dirs] if isinstance(run_dirs, Path) else list(run_dirs)
    runs, failed = {}, []
    for run_dir in run_dirs:
        with open_store(run_dir) as store:
            runs[run_dir] = entries(store, rules)
            failed += store.cells("failed")
            if run_dir == run_dirs[0]:
                meta = store.meta()
    rows = _merge(runs)
    if not rows:
        raise UsageError(f"{run_dirs[0]}: no finished cells to record in {baseline}")
    rows, replicates = _added(rows, baseline, rules) if add else (rows, [])
    data = {"schema": SCHEMA, "selections": rules, "floor_pp": floor_pp, "confidence": confidence,
            "run": {k: meta.get(k) for k in ("argv", "created_at", "versions")} | {
                "matrix": (meta.get("matrix") or {}).get("name")},
            "replicates": replicates + [str(d) for d in run_dirs], "numerics": sorted(_fingerprints(rows)),
            "entries": rows}
    baseline.parent.mkdir(parents=True, exist_ok=True)
    baseline.write_text(json.dumps(data, indent=1) + "\n")
    note = f"; {len(failed)} failed cell(s) not recorded" if failed else ""
    over = f" over {len(run_dirs)} replicate runs" if len(run_dirs) > 1 else ""
    return (f"wrote {baseline}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'} under {', '.join(rules)}"
            f"{over}{note}")


def _numerics(meta: dict[str, Any]) -> str:
    """The numerics fingerprint (``oodbench.numerics``) in a run's meta; ``UNKNOWN_NUMERICS`` for a run recorded
    before runs recorded one."""
    return (meta.get("versions") or {}).get("numerics") or UNKNOWN_NUMERICS


def _kept_settings(baseline: Path) -> dict[str, float]:
    """The floor and confidence of the baseline being replaced; the defaults when there is none (or it is
    unreadable, which is what an update repairs)."""
    try:
        data = load(baseline)
    except UsageError:
        return {"floor_pp": DEFAULT_FLOOR_PP, "confidence": DEFAULT_CONFIDENCE}
    return {"floor_pp": data["floor_pp"], "confidence": data["confidence"]}


def _is_confidence(value: Any) -> bool:
    return _number(value, minimum=0.5) and value < 1.0


def _confidence(value: float) -> float:
    if not _is_confidence(value):
        raise UsageError(f"--confidence {value}: expected a probability in [0.5, 1)")
    return value


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
    rules = data.get("selections")
    if not isinstance(rules, list) or not rules or any(r not in RULES for r in rules):
        raise _fail(path, "'selections'", f"is {rules!r} (allowed: a list of {', '.join(RULES)})")
    if not _number(data.get("floor_pp"), minimum=0.0):
        raise _fail(path, "'floor_pp'", f"is {data.get('floor_pp')!r}: must be a finite number >= 0")
    if not _is_confidence(data.get("confidence")):
        raise _fail(path, "'confidence'", f"is {data.get('confidence')!r}: must be a number in [0.5, 1)")
    numerics = data.get("numerics")
    if not isinstance(numerics, list) or not all(isinstance(n, str) for n in numerics):
        raise _fail(path, "'numerics'", f"is {numerics!r}: must be a list of fingerprints (strings)")
    if not isinstance(data.get("replicates"), list):
        raise _fail(path, "'replicates'", "must be a list of run directories")
    if not isinstance(data.get("entries"), list):
        raise _fail(path, "'entries'", "must be a list")
    for i, entry in enumerate(data["entries"]):
        _check_entry(path, f"entries[{i}]", entry, rules)
    return data


def _number(value: Any, minimum: float | None = None) -> bool:
    """A finite JSON number (not a bool) at or above ``minimum``: NaN compares false with everything, so a NaN
    baseline would pass every check."""
    return finite_number(value) and (minimum is None or value >= minimum)


def _check_entry(path: Path, where: str, entry: Any, rules: list[str]) -> None:
    fields = (*KEY, "seeds", "harness", "plugins", "spec_hash", "config_hash", "metrics")
    if not isinstance(entry, dict) or any(k not in entry for k in fields):
        raise _fail(path, where, f"lacks a field (expected: {', '.join(fields)})")
    if entry["selection"] not in rules:
        raise _fail(path, f"{where}.selection", f"is {entry['selection']!r} (allowed: {', '.join(rules)})")
    if not isinstance(entry["metrics"], dict):
        raise _fail(path, f"{where}.metrics", "must be a table of metric -> better, samples")
    for metric, values in entry["metrics"].items():
        if metric not in GUARDED:
            raise _fail(path, f"{where}.metrics.{metric}", f"is not guarded (allowed: {', '.join(GUARDED)})")
        samples = values.get("samples") if isinstance(values, dict) else None
        if not isinstance(samples, dict) or not samples or not all(isinstance(v, dict) and v for v in samples.values()):
            raise _fail(path, f"{where}.metrics.{metric}.samples",
                        "must map each numerics fingerprint to a table of seed -> values")
        for fp, by_seed in samples.items():
            for seed, recorded in by_seed.items():
                if not isinstance(recorded, list) or not recorded or not all(_number(v) for v in recorded):
                    raise _fail(path, f"{where}.metrics.{metric}.samples.{fp}.{seed}",
                                f"is {recorded!r}: must be a non-empty list of finite numbers")
        if values.get("better") != _better(metric):
            raise _fail(path, f"{where}.metrics.{metric}.better", f"must be {_better(metric)!r} for {metric}")


def half_width(samples: dict[str, list[float]], m: int, confidence: float, floor: float) -> float:
    """Half-width of the two-sided prediction interval for the mean of ``m`` new trials on new seeds.

    ``samples`` maps each seed to its values (``_by_seed``). n is the number
    of recorded seeds (the independent draws: a seed's replicate runs and
    its runs on other kinds of CPU add spread, not degrees of freedom); s the
    sample std of every recorded value.
    """
    from scipy.special import stdtrit  # the t quantile; scipy.stats would cost a second more to import

    values = [v for recorded in samples.values() for v in recorded]
    n = len(samples)
    if n < 2:
        return floor
    s = statistics.stdev(values)
    return max(floor, float(stdtrit(n - 1, (1 + confidence) / 2)) * s * math.sqrt(1 / m + 1 / n))


def paired_half_width(samples: dict[str, list[float]], seeds: Sequence[str], confidence: float,
                      floor: float) -> float | None:
    """Half-width for a run of ``seeds`` the baseline recorded, from the spread between its replicate runs.

    ``samples``: seed -> values on the run's kind of CPU. The same seed on the
    same code differs between runs there only by numerical noise (thread
    count, executor); its variance is pooled over
    the seeds the baseline has in several runs, with their replicates minus
    one as degrees of freedom. The run's mean minus the baseline's mean over
    the same seeds then has variance s_w^2 (1 + 1/R) / m for m seeds of R
    replicates each. None when no seed was recorded twice: nothing says how
    large numerical noise is, and the seed interval applies.
    """
    from scipy.special import stdtrit

    replicated = [values for values in samples.values() if len(values) > 1]
    df = sum(len(values) - 1 for values in replicated)
    if not df:
        return None
    pooled = sum((len(v) - 1) * statistics.variance(v) for v in replicated) / df
    runs = statistics.fmean(len(samples[s]) for s in seeds)
    spread = math.sqrt(pooled * (1 + 1 / runs) / len(seeds))
    return max(floor, float(stdtrit(df, (1 + confidence) / 2)) * spread)


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


def _metric_label(metric: str, recorded: dict[str, Any]) -> str:
    return f"{metric} - {recorded['vs']}" if recorded.get("vs") else metric


def _compare(base: dict[str, Any], now: dict[str, Any], floor: float, confidence: float,
             numerics: str) -> list[Move]:
    """``numerics``: the run's fingerprint. Where the baseline has samples of it, the machine rounds as theirs
    did and the run's seeds are compared with the same seeds recorded there; elsewhere with new seeds."""
    label, reason = _label(base), _incomparable(base, now)
    extra = sorted(set(now["seeds"]) - set(base["seeds"]))
    moves = []
    for metric, old in base["metrics"].items():
        new = now["metrics"].get(metric)
        name = _metric_label(metric, old)
        if new is None or not new["samples"]:
            moves.append(Move(label, name, old["mean"], None, None, "missing", "metric not in the run"))
            continue
        current = statistics.fmean(_samples(new["samples"]))
        if reason:
            moves.append(Move(label, name, old["mean"], current, None, "not comparable", reason))
            continue
        seeds = list(_by_seed(new["samples"]))
        own = old["samples"].get(numerics, {})
        paired = not extra and set(seeds) <= set(own)
        allowed = paired_half_width(own, seeds, confidence, floor) if paired else None
        note = (f"seeds {extra} not in the baseline" if extra
                else "" if own else "other CPU numerics: new-seed interval")
        if allowed is None:
            reference = old["mean"]
            allowed = half_width(_by_seed(old["samples"]), len(seeds), confidence, floor)
        else:  # the same seeds: compare with their own recorded mean
            reference = statistics.fmean(statistics.fmean(own[s]) for s in seeds)
        gain = (current - reference) * (1 if old["better"] == "higher" else -1)
        status = "regressed" if gain < -allowed else "improved" if gain > allowed else "ok"
        moves.append(Move(label, name, reference, current, allowed, status, note))
    return moves


@dataclass
class CheckResult:
    text: str
    failed: bool
    moves: list[Move]


def check(run_dir: Path, baseline: Path, floor_pp: float | None = None, partial: bool = False) -> CheckResult:
    """Compare a run with a baseline; ``failed`` when a metric left its interval or a baseline entry is missing.

    ``partial``: the run covers part of the baseline's matrix (``oodbench run --matrix M -a NAME``), so
    entries it lacks are not run rather than missing.
    """
    if floor_pp is not None and (not math.isfinite(floor_pp) or floor_pp < 0):
        raise UsageError(f"--floor {floor_pp}: expected percentage points >= 0")
    data = load(baseline)
    floor = data["floor_pp"] if floor_pp is None else floor_pp
    with open_store(run_dir) as store:
        current = {tuple(e[k] for k in KEY): e for e in _merge({run_dir: entries(store, data["selections"])})}
        numerics = _numerics(store.meta())
    moves: list[Move] = []
    seen = set()
    for base in data["entries"]:
        key = tuple(base[k] for k in KEY)
        seen.add(key)
        if key in current:
            moves += _compare(base, current[key], floor, data["confidence"], numerics)
        elif not partial:
            moves += [Move(_label(base), _metric_label(m, v), v["mean"], None, None, "missing",
                           "not in the run (failed or not run)") for m, v in base["metrics"].items()]
    for key, entry in current.items():
        if key not in seen:
            moves += [Move(_label(entry), _metric_label(m, v), None, v["mean"], None, "new", "not in the baseline")
                      for m, v in entry["metrics"].items()]
    counts = {status: sum(m.status == status for m in moves)
              for status in ("regressed", "improved", "missing", "ok", "not comparable", "new")}
    shown = [m.row() for m in moves if m.moved()]
    lines = [(f"leaderboard check of {run_dir} against {baseline} (selection {', '.join(data['selections'])}; "
              f"values in % and pp; baseline = the recorded mean over the run's seeds; allowed = the "
              f"{data['confidence']:.0%} interval from the spread between the baseline's replicate runs of those "
              f"seeds (of its seeds when none was replicated, the run has others or its machine's numerics "
              f"differ from the baseline's), at least {floor:g} pp)")]
    if numerics not in data["numerics"]:
        lines.append(f"this machine's numerics fingerprint {numerics} is not among the baseline's "
                     f"({', '.join(data['numerics']) or 'none'}): every row is compared as new seeds")
    if shown:
        lines += ["", tabulate(shown, headers=["entry", "metric", "baseline", "run", "change", "allowed", "status",
                                               "note"], disable_numparse=True)]
    else:
        lines.append(f"nothing moved by {SHOWN_PP} pp or more")
    lines += ["", "; ".join(f"{n} {status}" for status, n in counts.items()) + f" (of {len(moves)} metric values)"]
    failed = any(m.status in FAILING for m in moves)
    lines.append("FAILED: a metric left its interval (either way: refresh the baseline if the change is intended, "
                 "docs/reports.md) or an entry is missing" if failed else "passed")
    return CheckResult("\n".join(lines), failed, moves)
