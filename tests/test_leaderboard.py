"""``oodbench leaderboard check|update`` on a real (tiny) run: passes unchanged, fails on a planted regression,
sets aside what is not comparable, and keeps the committed ``quick`` baseline in step with the ``quick`` matrix."""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import oodbench
from oodbench import __version__
from oodbench.cli import main
from oodbench.leaderboard import TRACKED, config_hash, load
from oodbench.matrix import Overrides, expand, load_matrix
from oodbench.plugins import get_plugins

COMMITTED = Path(oodbench.__file__).parent / "leaderboards" / "quick.json"
TINY = ["run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", "1", "--seeds", "0",
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
def test_update_records_values_versions_and_hashes(recorded):
    _, baseline = recorded
    data = load(baseline)
    (entry,) = data["entries"]
    assert (entry["dataset"], entry["algorithm"], entry["env"], entry["seeds"]) == ("colored_mnist", "erm", "test", [0])
    assert entry["harness"] == __version__
    assert entry["spec_hash"] == get_plugins().registry("datasets").get("colored_mnist").spec_hash
    assert entry["plugins"]["algorithm"] == f"oodbench {__version__}"
    assert {m: entry["metrics"][m]["better"] for m in TRACKED} == {
        "acc": "higher", "worst_group_acc": "higher", "gap": "lower"}
    acc = entry["metrics"]["acc"]
    assert 0 < acc["value"] < 50 and acc["std"] == 0 and acc["tolerance"] == 2.0  # ERM follows the color
    assert entry["metrics"]["gap"]["value"] == pytest.approx(75 - acc["value"], abs=1e-3)


@pytest.mark.slow
def test_an_unchanged_run_passes(recorded, capsys):
    code, out = _check(capsys, *recorded)
    assert code == 0, out
    assert "passed" in out and "nothing moved" in out and "3 ok" in out


@pytest.mark.slow
def test_a_planted_regression_in_the_store_fails(recorded, tmp_path, capsys):
    run_dir, baseline = recorded
    copy = _copy(run_dir, tmp_path)
    _sql(copy, "UPDATE results SET acc = acc - 0.05, gap = abs(acc - 0.05 - ceiling) * 100 "
               "WHERE split = 'test' AND checkpoint = 'best_val'")
    code, out = _check(capsys, copy, baseline)
    assert code == 1, out
    moved = {line.split()[1]: line for line in out.splitlines() if line.startswith("colored_mnist/")}
    assert set(moved) == {"acc", "gap"}
    assert "regressed" in moved["acc"] and "-5.00" in moved["acc"] and "+5.00" in moved["gap"]
    assert "FAILED" in out
    # a wider tolerance lets the same drop through
    assert _check(capsys, copy, baseline, "--tolerance", "6")[0] == 0


@pytest.mark.slow
def test_a_raised_baseline_fails_and_a_lowered_one_is_an_improvement(recorded, tmp_path, capsys):
    run_dir, baseline = recorded

    def shift(by):
        def edit(data):
            data["entries"][0]["metrics"]["worst_group_acc"]["value"] += by
        return edit

    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, shift(3.0)))
    assert code == 1 and "worst_group_acc" in out and "regressed" in out
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, shift(-3.0)))
    assert code == 0 and "improved" in out


@pytest.mark.slow
def test_seed_noise_widens_the_tolerance(recorded, tmp_path, capsys):
    run_dir, baseline = recorded

    def noisy(data):
        data["entries"][0]["metrics"]["acc"]["value"] += 3.0
        data["entries"][0]["metrics"]["acc"]["std"] = 2.0  # allowed: 2 x 2 pp
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, noisy))
    assert code == 0 and "4.00" in out and "ok" in out


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
    assert table.count("not comparable") == len(TRACKED) and reason in table and "regressed" not in table
    assert f"{len(TRACKED)} not comparable" in out


@pytest.mark.slow
def test_a_missing_entry_fails_and_a_new_one_is_listed(recorded, tmp_path, capsys):
    run_dir, baseline = recorded

    def extra(data):
        data["entries"].append(dict(data["entries"][0], env="test2"))
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, extra))
    assert code == 1 and "test2" in out and "missing" in out

    def empty(data):
        data["entries"] = []
    code, out = _check(capsys, run_dir, _edited(baseline, tmp_path, empty))
    assert code == 0 and "3 new" in out


@pytest.mark.slow
def test_replicate_runs_merge_into_mean_and_spread(recorded, tmp_path, capsys):
    """A baseline from two replicate runs records their mean and spread; a run on either side of that spread
    passes, where a baseline from one of them alone would call the other a regression."""
    run_dir, _ = recorded
    low = _copy(run_dir, tmp_path)
    _sql(low, "UPDATE results SET acc = acc - 0.05, gap = abs(acc - 0.05 - ceiling) * 100 "
              "WHERE split = 'test' AND checkpoint = 'best_val'")
    merged, single = tmp_path / "merged.json", tmp_path / "single.json"
    assert main(["leaderboard", "update", str(run_dir), str(low), "--baseline", str(merged)]) == 0
    assert "over 2 replicate runs" in capsys.readouterr().out
    (entry,) = load(merged)["entries"]
    high_acc = load(recorded[1])["entries"][0]["metrics"]["acc"]["value"]
    acc = entry["metrics"]["acc"]
    assert entry["runs"] == 2 and acc["value"] == pytest.approx(high_acc - 2.5, abs=1e-3)
    assert acc["std"] == pytest.approx(5 / 2 ** 0.5, abs=1e-3) and acc["tolerance"] == pytest.approx(2 * acc["std"], abs=1e-3)
    assert entry["metrics"]["worst_group_acc"]["std"] == 0 and entry["metrics"]["worst_group_acc"]["tolerance"] == 2
    assert _check(capsys, low, merged)[0] == 0 and _check(capsys, run_dir, merged)[0] == 0
    assert main(["leaderboard", "update", str(run_dir), "--baseline", str(single)]) == 0
    assert _check(capsys, low, single)[0] == 1


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
    ("schema.json", '{"schema": 7}', ["schema.json", "'schema'", "must be 2"]),
    ("rule.json", '{"schema": 2, "selection": "best"}', ["rule.json", "'selection'", "allowed: val, oracle, oracle_epoch, last"]),
    ("entry.json", '{"schema": 2, "selection": "val", "tolerance_pp": 2, "entries": [{"dataset": "x"}]}',
     ["entry.json", r"entries\[0\]", "expected: dataset, backbone"]),
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


def test_not_a_run_directory_and_a_bad_tolerance_exit_2(tmp_path, capsys):
    assert main(["leaderboard", "update", str(tmp_path), "--baseline", str(tmp_path / "b.json")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", "check", str(tmp_path), "--baseline", "b.json", "--tolerance", "-1"])
    assert exit_info.value.code == 2 and "percentage points >= 0" in capsys.readouterr().err


def test_the_committed_quick_baseline_matches_the_quick_matrix():
    """CI checks the quick matrix against this file: it must describe the same cells, data and versions, or the
    check would set everything aside as not comparable (or miss new rows)."""
    data = load(COMMITTED)
    plugins = get_plugins()
    cells = [c for c in expand(load_matrix("quick"), plugins, Overrides()) if c.skip_reason is None]
    matrix = {(c.dataset, c.backbone, c.algorithm, c.target): c for c in cells}
    recorded = {(e["dataset"], e["backbone"], e["algorithm"], e["target"]): e for e in data["entries"]}
    hint = "regenerate: oodbench run --matrix quick --out runs/quick && oodbench leaderboard update runs/quick " \
           f"--baseline {COMMITTED}"
    assert set(recorded) == set(matrix), hint
    for key, entry in recorded.items():
        cell = matrix[key]
        assert entry["config_hash"] == config_hash([cell.hparams()]), hint
        assert entry["spec_hash"] == plugins.registry("datasets").get(cell.dataset).spec_hash, hint
        assert entry["harness"] == __version__, hint
        for kind, name in (("dataset", cell.dataset), ("backbone", cell.backbone), ("algorithm", cell.algorithm),
                           ("target", cell.target)):
            assert entry["plugins"][kind] == " ".join(plugins.dist_of(f"{kind}s", name)), hint
