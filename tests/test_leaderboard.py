"""``oodbench leaderboard check|update`` on a real (tiny) run: passes unchanged, fails on a planted regression,
sets aside what is not comparable, and keeps the committed ``guard`` baseline in step with the ``guard`` matrix."""

import json
import statistics
import shutil
import sqlite3
from pathlib import Path

import pytest

import oodbench
from oodbench import __version__
from oodbench.cli import main
from oodbench.leaderboard import GUARDED, _paired, config_hash, half_width, load, paired_half_width
from oodbench.report import Stat
from oodbench.matrix import Overrides, expand, load_matrix
from oodbench.numerics import fingerprint
from oodbench.plugins import get_plugins

COMMITTED = Path(oodbench.__file__).parent / "leaderboards" / "guard.json"
TINY = ["run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", "1", "--seeds", "0,1",
        "--set", "batch_size=512", "--set", "train_eval_size=1000"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A finished run and the baseline ``leaderboard update`` wrote from it."""
    root = tmp_path_factory.mktemp("leaderboard")
    run_dir, baseline = root / "run", root / "baseline.json"
    assert main([*TINY, "--out", str(run_dir)]) == 0
    assert main(["leaderboard", "update", str(run_dir), "--baseline", str(baseline)]) == 0
    return run_dir, baseline


def _check(capsys, run_dir, baseline, *extra):
    capsys.readouterr()
    code = main(["leaderboard", "check", str(run_dir), "--baseline", str(baseline), *extra])
    return code, capsys.readouterr().out


def _copy(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    return copy


def _sql(run_dir, statement, *args):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.execute(statement, args)


def _edited(baseline, tmp_path, edit):
    data = json.loads(baseline.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_update_records_each_seed_with_versions_and_hashes(recorded):
    _, baseline = recorded
    data = load(baseline)
    assert data["selections"] == ["val"] and data["floor_pp"] == 0.5 and data["confidence"] == 0.99
    assert data["numerics"] == [fingerprint()]  # the run recorded this machine's, and update kept it
    (entry,) = data["entries"]
    assert (entry["dataset"], entry["algorithm"], entry["env"], entry["selection"], entry["seeds"]) == (
        "colored_mnist", "erm", "test", "val", [0, 1])
    assert entry["harness"] == __version__
    assert entry["spec_hash"] == get_plugins().registry("datasets").get("colored_mnist").spec_hash
    assert entry["plugins"]["algorithm"] == f"oodbench {__version__}"
    assert set(entry["metrics"]) == set(GUARDED) == {"acc", "worst_group_acc"}  # gap is acc seen from 75 %
    acc = entry["metrics"]["acc"]
    assert acc["better"] == "higher" and acc["vs"] is None and list(acc["samples"]) == [fingerprint()]
    by_seed = acc["samples"][fingerprint()]
    assert set(by_seed) == {"0", "1"} and all(0 < v[0] < 50 for v in by_seed.values())  # ERM follows the color


OTHER_CPU = "feedfacefeedface"
"""A numerics fingerprint no machine has."""


def _set_samples(metric, samples, numerics=None):
    """The first entry's ``metric`` recorded as ``samples`` (seed -> values) under ``numerics`` (default: the
    baseline's own fingerprint, this machine's), replacing every other kind of CPU's; the baseline's list of
    fingerprints is the caller's to change."""
    def edit(data):
        fp = numerics or data["numerics"][0]
        data["entries"][0]["metrics"][metric]["samples"] = {fp: samples}
        data["entries"][0]["metrics"][metric]["mean"] = statistics.fmean(v for s in samples.values() for v in s)
    return edit


def _other_cpu(run_dir, tmp_path):
    """A copy of the run as if recorded on another kind of CPU: its meta carries another fingerprint."""
    copy = _copy(run_dir, tmp_path / "other-cpu")
    _sql(copy, f"UPDATE meta SET value = json_set(value, '$.numerics', '{OTHER_CPU}') WHERE key = 'versions'")
    return copy


def _agreeing(now, shift=0.0):
    """Baseline samples whose seeds all agree, ``shift`` above the run's mean: no spread, so the floor decides
    (with two seeds, t(1, 0.995) = 63.7 makes any spread wide)."""
    mean = statistics.fmean(now.values()) + shift
    return {str(s): [mean] for s in now}


def _values(run_dir, metric):
    from oodbench.leaderboard import entries
    from oodbench.store import Store

    with Store.in_dir(run_dir, readonly=True) as store:
        (entry,) = entries(store, ["val"])
    (by_seed,) = entry["metrics"][metric]["samples"].values()
    return {int(s): v[0] for s, v in by_seed.items()}


@pytest.mark.slow
def test_an_unchanged_run_passes(recorded, capsys):
    code, out = _check(capsys, *recorded)
    assert code == 0, out
    assert "passed" in out and "nothing moved" in out and "2 ok" in out


@pytest.mark.slow
def test_a_planted_regression_in_the_store_fails(recorded, tmp_path, capsys):
    run_dir, baseline = recorded
    copy = _copy(run_dir, tmp_path)
    _sql(copy, "UPDATE results SET acc = acc - 0.05 WHERE split = 'test' AND checkpoint = 'best_val'")
    now = _values(run_dir, "acc")
    # a baseline whose seeds agree: the 5 pp drop is far outside its interval
    tight = _edited(baseline, tmp_path, _set_samples("acc", _agreeing(now)))
    code, out = _check(capsys, copy, tight)
    assert code == 1, out
    moved = {line.split()[1]: line for line in out.splitlines() if line.startswith("colored_mnist/")}
    assert set(moved) == {"acc"}
    assert "regressed" in moved["acc"] and "-5.00" in moved["acc"] and "FAILED" in out
    assert _check(capsys, copy, tight, "--floor", "6")[0] == 0  # a wider floor lets the same drop through


@pytest.mark.slow
def test_an_improvement_beyond_the_interval_also_fails(recorded, tmp_path, capsys):
    """A crossbar that lost its non-idealities looks better: the guard fails both ways."""
    run_dir, baseline = recorded
    now = _values(run_dir, "worst_group_acc")
    lowered = _edited(baseline, tmp_path, _set_samples("worst_group_acc", _agreeing(now, -3.0)))
    code, out = _check(capsys, run_dir, lowered)
    assert code == 1 and "worst_group_acc" in out and "improved" in out and "FAILED" in out


@pytest.mark.slow
def test_seed_spread_widens_the_interval(recorded, tmp_path, capsys):
    """The same 3 pp move fails against seeds that agree and passes against seeds 4 pp apart."""
    run_dir, baseline = recorded
    now = _values(run_dir, "acc")
    agree = _edited(baseline, tmp_path, _set_samples("acc", _agreeing(now, 3.0)))
    assert _check(capsys, run_dir, agree)[0] == 1
    mean = statistics.fmean(now.values())
    spread = {"0": [mean + 1.0], "1": [mean + 5.0]}  # 3 pp above on average, 4 pp apart: t(1) is wide
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, _set_samples("acc", spread)))
    assert code == 0 and "ok" in out, out


@pytest.mark.slow
def test_a_machine_with_other_numerics_is_judged_as_new_seeds(recorded, tmp_path, capsys):
    """Seeds 4 pp apart, each recorded twice alike: on the baseline's numerics a 3 pp move of the same seeds
    fails (no spread between replicates: the floor); on a machine that rounds differently it is a new draw."""
    run_dir, baseline = recorded
    mean = statistics.fmean(_values(run_dir, "acc").values())
    spread = {"0": [mean + 1.0, mean + 1.0], "1": [mean + 5.0, mean + 5.0]}
    same = _edited(baseline, tmp_path, _set_samples("acc", spread))
    code, out = _check(capsys, run_dir, same)
    assert code == 1 and "regressed" in out, out

    def elsewhere(data):
        _set_samples("acc", spread, OTHER_CPU)(data)
        data["numerics"] = [OTHER_CPU]

    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, elsewhere))
    assert code == 0, out
    assert f"numerics fingerprint {fingerprint()} is not among the baseline's ({OTHER_CPU})" in out
    assert "other CPU numerics: new-seed interval" in out


@pytest.mark.slow
def test_each_kind_of_cpu_is_paired_with_its_own_samples(recorded, tmp_path, capsys):
    """``update --add`` records another kind of CPU beside this one; a run of either is compared with the same
    seeds recorded on its own kind, so a 3 pp move fails on both although the two kinds' values differ by 10."""
    run_dir, _ = recorded
    other = _other_cpu(run_dir, tmp_path)
    _sql(other, "UPDATE results SET acc = acc + 0.10 WHERE split = 'test' AND checkpoint = 'best_val'")
    replicates = {run: _copy(run, tmp_path / f"replicate-{run.name}") for run in (run_dir, other)}
    both = tmp_path / "both.json"  # each kind recorded twice alike: no noise between replicates, the floor decides
    assert main(["leaderboard", "update", str(run_dir), str(replicates[run_dir]), "--baseline", str(both)]) == 0
    assert main(["leaderboard", "update", str(other), str(replicates[other]), "--baseline", str(both), "--add"]) == 0
    data = load(both)
    assert data["numerics"] == sorted([fingerprint(), OTHER_CPU]) and len(data["replicates"]) == 4
    (entry,) = data["entries"]
    acc = entry["metrics"]["acc"]["samples"]
    now = _values(run_dir, "acc")
    assert {int(s): v for s, v in acc[OTHER_CPU].items()} == {
        s: [pytest.approx(v + 10.0, abs=1e-3)] * 2 for s, v in now.items()}
    assert {int(s): v for s, v in acc[fingerprint()].items()} == {s: [v, v] for s, v in now.items()}
    assert entry["runs"] == 4
    assert _check(capsys, run_dir, both)[0] == 0 and _check(capsys, other, both)[0] == 0
    for run in (run_dir, other):
        moved = _copy(run, tmp_path / run.name)
        _sql(moved, "UPDATE results SET acc = acc - 0.03 WHERE split = 'test' AND checkpoint = 'best_val'")
        code, out = _check(capsys, moved, both)
        assert code == 1 and "regressed" in out, out
    # a plain update starts afresh: the other kind's samples are gone
    assert main(["leaderboard", "update", str(run_dir), "--baseline", str(both)]) == 0
    assert load(both)["numerics"] == [fingerprint()]


@pytest.mark.slow
def test_add_drops_what_the_code_or_configuration_no_longer_matches(recorded, tmp_path, capsys):
    run_dir, baseline = recorded
    other = _other_cpu(run_dir, tmp_path)
    _sql(other, "UPDATE plugins SET version = '9.9.9' WHERE kind = 'algorithm'")
    added = tmp_path / "added.json"
    shutil.copy(baseline, added)
    assert main(["leaderboard", "update", str(other), "--baseline", str(added), "--add"]) == 0
    (entry,) = load(added)["entries"]
    assert list(entry["metrics"]["acc"]["samples"]) == [OTHER_CPU] and entry["plugins"]["algorithm"].endswith("9.9.9")
    capsys.readouterr()
    assert main(["leaderboard", "update", str(run_dir), "--baseline", str(added), "--add", "--selection", "last"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'selections'" in err and "--add keeps" in err
    assert main(["leaderboard", "update", str(other), "--baseline", str(added), "--add"]) == 2  # its kind is there
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"already holds numerics fingerprint {OTHER_CPU}" in err


def test_half_width_is_the_t_prediction_interval_of_a_mean():
    samples = {"0": [10.0], "1": [12.0], "2": [14.0]}  # n = 3, s = 2
    # t(2, 0.975) = 4.302653 (tables): 4.302653 * 2 * sqrt(1/1 + 1/3) = 9.9366; for a mean of 3: sqrt(2/3)
    assert half_width(samples, 1, 0.95, 0.5) == pytest.approx(9.9366, abs=1e-3)
    assert half_width(samples, 3, 0.95, 0.5) == pytest.approx(7.0262, abs=1e-3)
    assert half_width({"0": [5.0], "1": [5.0]}, 1, 0.99, 0.5) == 0.5  # no spread: the floor
    assert half_width({"0": [5.0, 9.0]}, 1, 0.99, 0.5) == 0.5  # one seed: no interval to compute
    # a seed's replicate runs add to the spread, not to the degrees of freedom: n = 2 seeds, t(1, 0.975) = 12.7062,
    # s over all four values = 1.2910: 12.7062 * 1.2910 * sqrt(1 + 1/2) = 20.090
    assert half_width({"0": [10.0, 11.0], "1": [12.0, 13.0]}, 1, 0.95, 0.0) == pytest.approx(20.090, abs=1e-2)


def test_the_same_seeds_are_judged_by_the_spread_between_replicate_runs():
    # seeds 0 and 1 recorded twice (1.0 and 0.5 apart), seed 2 once: pooled variance (0.5 + 0.125) / 2 = 0.3125 on
    # 2 degrees of freedom; t(2, 0.975) = 4.302653; a run of seeds 0, 1 (runs 2 each): sqrt(0.3125 * 1.5 / 2) = 0.4841
    samples = {"0": [10.0, 11.0], "1": [20.0, 20.5], "2": [30.0]}
    assert paired_half_width(samples, ["0", "1"], 0.95, 0.0) == pytest.approx(2.0830, abs=1e-3)
    assert paired_half_width(samples, ["0", "1"], 0.95, 5.0) == 5.0
    assert paired_half_width({"0": [10.0], "1": [12.0]}, ["0"], 0.95, 0.5) is None  # no replicate: no noise scale
    # far narrower than the interval for new seeds, which must allow for the seeds' own 10 pp steps
    assert half_width(samples, 2, 0.95, 0.0) > 10 * paired_half_width(samples, ["0", "1"], 0.95, 0.0)


def test_a_target_row_is_guarded_as_its_difference_to_the_float_row_of_the_same_training():
    def row(target, acc, seeds=(0, 1)):
        return {"dataset": "d", "backbone": "mlp", "algorithm": "erm", "hparams": "", "env": "test", "target": target,
                "seeds": list(seeds), "acc": Stat.of(acc), "worst_group_acc": Stat.of([a / 2 for a in acc])}

    rows = [row("float", [0.20, 0.30]), row("memristor", [0.18, 0.31]), row("other", [0.5], seeds=(0,))]
    orphan = dict(row("memristor", [0.4, 0.4]), algorithm="irm")
    paired = _paired([*rows, orphan])
    values, vs = paired[1]
    assert vs == "float" and values["acc"] == pytest.approx({0: -2.0, 1: 1.0})
    assert values["worst_group_acc"] == pytest.approx({0: -1.0, 1: 0.5})
    assert paired[0] == ({"acc": pytest.approx({0: 20.0, 1: 30.0}),
                                    "worst_group_acc": pytest.approx({0: 10.0, 1: 15.0})}, None)
    assert paired[2][0]["acc"] == pytest.approx({0: 30.0})  # only the seeds the target has
    assert paired[3] == ({"acc": pytest.approx({0: 40.0, 1: 40.0}),
                                   "worst_group_acc": pytest.approx({0: 20.0, 1: 20.0})}, None)


@pytest.mark.slow
@pytest.mark.parametrize("change, reason", [
    ("UPDATE meta SET value = '{\"colored_mnist\": \"0123456789abcdef\"}' WHERE key = 'dataset_specs'",
     "dataset spec"),
    ("UPDATE plugins SET version = '9.9.9' WHERE kind = 'algorithm'", "oodbench 9.9.9"),
    ("UPDATE meta SET value = '{\"oodbench\": \"0.0.1\"}' WHERE key = 'versions'", "-> 0.0.1"),
])
def test_other_versions_or_data_are_not_comparable(recorded, tmp_path, capsys, change, reason):
    run_dir, baseline = recorded
    copy = _copy(run_dir, tmp_path)
    _sql(copy, change)
    _sql(copy, "UPDATE results SET acc = acc - 0.2 WHERE split = 'test'")  # would be a regression
    code, out = _check(capsys, copy, baseline)
    assert code == 0, out
    table = out.split("\n\n")[1]
    assert table.count("not comparable") == len(GUARDED) and reason in table and "regressed" not in table
    assert f"{len(GUARDED)} not comparable" in out


@pytest.mark.slow
def test_a_missing_entry_fails_unless_the_run_is_partial_and_a_new_one_is_listed(recorded, tmp_path, capsys):
    run_dir, baseline = recorded

    def extra(data):
        data["entries"].append(dict(data["entries"][0], env="test2"))
    with_extra = _edited(baseline, tmp_path, extra)
    code, out = _check(capsys, run_dir, with_extra)
    assert code == 1 and "test2" in out and "missing" in out
    code, out = _check(capsys, run_dir, with_extra, "--partial")
    assert code == 0 and "test2" not in out, out

    def empty(data):
        data["entries"] = []
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, empty))
    assert code == 0 and "2 new" in out


@pytest.mark.slow
def test_replicate_runs_record_every_seed_side_by_side(recorded, tmp_path, capsys):
    """A baseline from two replicate runs keeps both values of each seed; a run on either side passes, where a
    baseline from one of them alone (seeds made to agree) calls the other a regression."""
    run_dir, _ = recorded
    low = _copy(run_dir, tmp_path)
    _sql(low, "UPDATE results SET acc = acc - 0.03 WHERE split = 'test' AND checkpoint = 'best_val'")
    merged = tmp_path / "merged.json"
    assert main(["leaderboard", "update", str(run_dir), str(low), "--baseline", str(merged)]) == 0
    assert "over 2 replicate runs" in capsys.readouterr().out
    (entry,) = load(merged)["entries"]
    now = _values(run_dir, "acc")
    (acc,) = entry["metrics"]["acc"]["samples"].values()
    assert entry["runs"] == 2 and entry["seeds"] == [0, 1]
    assert {int(s): v for s, v in acc.items()} == {
        s: [pytest.approx(v, abs=1e-3), pytest.approx(v - 3.0, abs=1e-3)] for s, v in now.items()}
    assert _check(capsys, low, merged)[0] == 0 and _check(capsys, run_dir, merged)[0] == 0
    agree = _edited(merged, tmp_path, _set_samples("acc", _agreeing(now)))
    assert _check(capsys, low, agree)[0] == 1


@pytest.mark.slow
def test_a_run_of_another_configuration_is_not_a_replicate(recorded, tmp_path, capsys):
    run_dir, _ = recorded
    other = _copy(run_dir, tmp_path)
    _sql(other, "UPDATE plugins SET version = '9.9.9' WHERE kind = 'algorithm'")
    capsys.readouterr()
    assert main(["leaderboard", "update", str(run_dir), str(other), "--baseline", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is not a replicate of" in err and "9.9.9" in err and str(other) in err
    assert not (tmp_path / "b.json").exists()


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text, patterns", [
    ("absent.json", None, ["absent.json", "no such file", "leaderboard update"]),
    ("broken.json", "{", ["broken.json", "not valid JSON"]),
    ("schema.json", '{"schema": 7}', ["schema.json", "'schema'", "must be 5"]),
    ("rule.json", '{"schema": 5, "selections": ["best"]}', ["rule.json", "'selections'", "val, oracle, oracle_epoch, last"]),
    ("floor.json", '{"schema": 5, "selections": ["last"], "floor_pp": NaN}', ["floor.json", "'floor_pp'", "finite"]),
    ("numerics.json", '{"schema": 5, "selections": ["val"], "floor_pp": 2, "confidence": 0.99, "numerics": "x"}',
     ["numerics.json", "'numerics'", "list of fingerprints"]),
    ("entry.json", '{"schema": 5, "selections": ["val"], "floor_pp": 2, "confidence": 0.99, "numerics": [], "replicates": [], "entries": [{"dataset": "x"}]}',
     ["entry.json", r"entries\[0\]", "expected: dataset, backbone"]),
    ("samples.json", '{"schema": 5, "selections": ["val"], "floor_pp": 2, "confidence": 0.99, "numerics": [], "replicates": [], "entries": [{"dataset": "x", '
     '"backbone": "b", "algorithm": "a", "target": "t", "hparams": "", "env": "e", "selection": "val", "seeds": [0], '
     '"harness": "1", "plugins": {}, "spec_hash": "s", "config_hash": "c", "metrics": {"acc": {"better": "higher", '
     '"samples": {"f": {"0": []}}}}}]}', ["samples.json", r"entries\[0\]\.metrics\.acc\.samples\.f\.0", "non-empty list"]),
    ("flat.json", '{"schema": 5, "selections": ["val"], "floor_pp": 2, "confidence": 0.99, "numerics": [], "replicates": [], "entries": [{"dataset": "x", '
     '"backbone": "b", "algorithm": "a", "target": "t", "hparams": "", "env": "e", "selection": "val", "seeds": [0], '
     '"harness": "1", "plugins": {}, "spec_hash": "s", "config_hash": "c", "metrics": {"acc": {"better": "higher", '
     '"samples": {"0": [1.0]}}}}]}', ["flat.json", r"entries\[0\]\.metrics\.acc\.samples", "each numerics fingerprint"]),
])
def test_bad_baselines_exit_2_with_one_line(tmp_path, capsys, name, text, patterns):
    import re

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sqlite3.connect(run_dir / "results.sqlite").close()
    path = tmp_path / name if text is None else _bad(tmp_path, name, text)
    assert main(["leaderboard", "check", str(run_dir), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("oodbench: error: ")
    assert all(re.search(p, err) for p in patterns), err


def test_not_a_run_directory_and_a_bad_floor_exit_2(tmp_path, capsys):
    assert main(["leaderboard", "update", str(tmp_path), "--baseline", str(tmp_path / "b.json")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", "check", str(tmp_path), "--baseline", "b.json", "--floor", "-1"])
    assert exit_info.value.code == 2 and "percentage points >= 0" in capsys.readouterr().err


def test_the_committed_guard_baseline_matches_the_guard_matrix():
    """CI checks the guard matrix against this file: it must describe the same cells, data and versions, or the
    check would set everything aside as not comparable (or miss new rows)."""
    data = load(COMMITTED)
    plugins = get_plugins()
    cells = [c for c in expand(load_matrix("guard"), plugins, Overrides()) if c.skip_reason is None]
    matrix = {(c.dataset, c.backbone, c.algorithm, c.target): c for c in cells}
    recorded = {(e["dataset"], e["backbone"], e["algorithm"], e["target"]): e for e in data["entries"]}
    hint = f"regenerate it as docs/reports.md says (oodbench leaderboard update ... --baseline {COMMITTED})"
    assert set(recorded) == set(matrix), hint
    for key, entry in recorded.items():
        cell = matrix[key]
        assert entry["config_hash"] == config_hash([cell.hparams()]), hint
        assert entry["spec_hash"] == plugins.registry("datasets").get(cell.dataset).spec_hash, hint
        assert entry["harness"] == __version__, hint
        for kind, name in (("dataset", cell.dataset), ("backbone", cell.backbone), ("algorithm", cell.algorithm),
                           ("target", cell.target)):
            assert entry["plugins"][kind] == " ".join(plugins.dist_of(f"{kind}s", name)), hint
