"""Damaged files and full or read-only disks: a checkpoint, a dataset cache or the store that no longer holds
what was written is never trusted, and a disk that refuses writes gives one line, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, assert_complete_once, query, results
from oodbench.cli import main
from oodbench.data import atomic
from oodbench.data.catalog import SpecDataset
from oodbench.data.spec import load_spec
from oodbench.store import STORE_NAME
from oodbench.testing import small_spec_text

ONE = [*TINY, "--seeds", "0", "-t", "float"]


PROGRESS = re.compile(r"^oodbench: (\[\d+/\d+\] |\d+ cells to run )")
"""The progress lines a run prints when stderr is not a terminal: not errors."""


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(fault_site, tmp_path_factory):
    """A finished one-cell run, copied by each test that damages it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    done = fault_site.run(["run", *ONE, "--out", str(run_dir)])
    assert done.returncode == 0, done.stderr
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# --- checkpoints ---------------------------------------------------------------------------------------------

def _zero_block(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 32768] = bytes(min(32768, len(data) - middle))
    path.write_bytes(bytes(data))


def _huge_floats(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\xff\xff\x7f\x7f" * 1024  # float32 3.4e38, the size of the measured bit flips
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_zero_block, _huge_floats, Path.unlink], ids=["zeroed", "3e38", "deleted"])
def test_a_damaged_checkpoint_is_retrained_on_resume_never_used(fault_site, finished, tmp_path, damage):
    run_dir = _copy(finished, tmp_path)
    before = results(run_dir)
    (trained_at,), = query(run_dir, "SELECT updated_at FROM trainings")
    checkpoints = sorted(run_dir.glob("checkpoints/*/epoch-*.pt"))
    assert checkpoints
    for path in checkpoints:
        damage(path)
    resumed = fault_site.run(["run", *TINY, "--seeds", "0", "-t", "float", "-t", "faulty_float",
                              "--out", str(run_dir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert_complete_once(run_dir, cells=2, trainings=1)
    (retrained_at,), = query(run_dir, "SELECT updated_at FROM trainings")
    assert retrained_at > trained_at  # trained again, not loaded
    now = results(run_dir)
    assert {k: now[k] for k in before} == before  # the same network again: the float cell's numbers hold
    assert len(now) == 2 * len(before)


@pytest.mark.slow
def test_a_resume_whose_new_target_kills_its_worker_keeps_the_finished_training(fault_site, finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    curves = query(run_dir, "SELECT * FROM curves ORDER BY epoch, split")
    training = query(run_dir, "SELECT * FROM trainings")
    before = results(run_dir)
    resumed = fault_site.run(["run", *TINY, "--seeds", "0", "-t", "float", "-t", "faulty_float", "--executor",
                              "process", "--jobs", "2", "--out", str(run_dir), "--resume"], fault="deploy")
    assert resumed.returncode == 1, resumed.stderr
    assert query(run_dir, "SELECT target, status FROM cells ORDER BY target") == [
        ("faulty_float", "failed"), ("float", "done")]
    assert query(run_dir, "SELECT * FROM curves ORDER BY epoch, split") == curves
    assert query(run_dir, "SELECT * FROM trainings") == training
    assert results(run_dir) == before


# --- dataset caches ------------------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(small_spec_text())
    return SpecDataset(load_spec(spec), cache_dir=tmp_path / "cache")


def _tamper(path: Path, edit) -> None:
    stored = torch.load(path, weights_only=True)
    edit(stored)
    torch.save(stored, path)


def test_a_cache_whose_labels_were_zeroed_is_rebuilt(small):
    fresh = small.build(0, None)
    _tamper(small.cache_path(0), lambda stored: stored["environments"][0]["y"].zero_())
    with pytest.warns(UserWarning, match="do not match their sha256"):
        rebuilt = small.build(0, None)
    assert rebuilt[0].y.sum() > 0 and all(torch.equal(a.y, b.y) for a, b in zip(rebuilt, fresh))


def test_another_seeds_cache_copied_over_is_rebuilt(small):
    seed0 = small.build(0, None)
    small.build(1, None)
    shutil.copy(small.cache_path(1), small.cache_path(0))
    with pytest.warns(UserWarning, match="another spec, seed or format"):
        rebuilt = small.build(0, None)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.attribute, b.attribute) for a, b in zip(rebuilt, seed0))
    assert not torch.equal(rebuilt[0].attribute, torch.load(small.cache_path(1), weights_only=True)[
        "environments"][0]["attribute"])


def test_a_stale_temp_file_of_a_killed_writer_is_removed(small, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    name = small.cache_path(0).stem
    stale, live = cache / f".{name}-old.tmp", cache / f".{name}-live.tmp"
    stale.touch()
    live.touch()
    old = time.time() - atomic.STALE_TMP_S - 60
    os.utime(stale, (old, old))
    small.build(0, None)
    assert not stale.exists() and live.exists()  # a writer that may still be running keeps its file


def test_a_cache_that_cannot_be_written_warns_and_the_build_goes_on(small, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full)
    with pytest.warns(UserWarning, match="could not write dataset cache .*No space left"):
        environments = small.build(0, None)
    assert len(environments) == 4 and not small.cache_path(0).exists()


# --- the store -----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", [["report"], ["run", "--resume", "--out"]], ids=["report", "resume"])
def test_a_truncated_store_is_one_line(finished, tmp_path, capsys, command):
    run_dir = _copy(finished, tmp_path)
    store = run_dir / STORE_NAME
    with sqlite3.connect(store) as db:  # fold the WAL in, so truncating cuts real pages
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 3])
    capsys.readouterr()
    assert main([*command, str(run_dir)]) == 2
    assert "results.sqlite" in _one_line(capsys.readouterr().err)


@pytest.mark.slow
def test_a_full_disk_while_recording_stops_with_one_line_and_keeps_what_was_stored(fault_plugins, tmp_path, capsys,
                                                                                   monkeypatch):
    """Simulated (works everywhere): the store refuses the second cell's write as SQLite does on a full disk."""
    from oodbench.store import Store

    record = Store.record_cell
    calls = []

    def full_after_one(self, result, plugins):
        calls.append(result.key)
        if len(calls) > 1:
            raise sqlite3.OperationalError("database or disk is full")
        record(self, result, plugins)

    monkeypatch.setattr(Store, "record_cell", full_after_one)
    run_dir = tmp_path / "run"
    capsys.readouterr()
    code = main(["run", *TINY, "--seeds", "0,1", "-t", "float", "--out", str(run_dir)])
    message = _one_line(capsys.readouterr().err)
    assert code == 2 and "could not record a result" in message and "database or disk is full" in message
    assert query(run_dir, "SELECT status FROM cells ORDER BY seed") == [("done",), ("pending",)]


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_fails_its_cell_and_leaves_no_partial_file(fault_plugins, tmp_path,
                                                                                      monkeypatch, capsys):
    """Simulated: torch.save reports a full disk as RuntimeError (inline_container.cc)."""
    from oodbench import train

    def full(state, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(train.torch, "save", full)
    run_dir = tmp_path / "run"
    code = main(["run", *ONE, "--out", str(run_dir)])
    assert code == 1
    (error,), = query(run_dir, "SELECT error FROM cells")
    assert "PytorchStreamWriter failed writing file" in error
    assert not list(run_dir.rglob("*.partial"))
    assert "Traceback" not in capsys.readouterr().err


# --- a real full disk (a small tmpfs) and a real read-only run directory --------------------------------------

@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'}); the simulated "
                    f"full-disk tests above cover the same paths")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as stream:
        with contextlib.suppress(OSError):
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()


@pytest.mark.slow
def test_a_run_on_a_full_disk_is_one_line_and_resumes_once_there_is_space(fault_site, tmp_path):
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        _fill(disk)
        (disk / "filler").write_bytes((disk / "filler").read_bytes()[:-200_000])  # room for a store, not a model
        run_dir = disk / "run"
        done = fault_site.run(["run", *ONE, "--out", str(run_dir)])
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr
        assert all(line.startswith("oodbench") for line in done.stderr.splitlines() if line.strip()), done.stderr
        assert not list(disk.rglob("*.partial"))
        (disk / "filler").unlink()
        again = fault_site.run(["run", "--out", str(run_dir), "--resume"] if (run_dir / STORE_NAME).exists()
                               else ["run", *ONE, "--out", str(run_dir)])
        assert again.returncode == 0, again.stderr
        assert_complete_once(run_dir, cells=1, trainings=1)


@pytest.mark.slow
def test_a_full_disk_under_the_lock_file_is_one_line(fault_site, tmp_path):
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "run").mkdir()
        _fill(disk)
        done = fault_site.run(["run", *ONE, "--out", str(disk / "run")])
        assert done.returncode == 2
        assert "lock file" in _one_line(done.stderr)


@pytest.mark.slow
def test_a_full_data_home_warns_and_every_cell_still_runs(fault_site, tmp_path):
    with _tmpfs(tmp_path / "home", "1m") as home:
        _fill(home)
        fetched = fault_site.run(["data", "fetch", "mnist"], OODBENCH_DATA=str(home))
        assert fetched.returncode == 0, fetched.stderr
        assert "could not write MNIST cache" in fetched.stderr and "Traceback" not in fetched.stderr
        run_dir = tmp_path / "run"
        done = fault_site.run(["run", *ONE, "--out", str(run_dir)], OODBENCH_DATA=str(home))
        assert done.returncode == 0, done.stderr
        assert_complete_once(run_dir, cells=1, trainings=1)


@contextlib.contextmanager
def _read_only(path: Path):
    """``path`` on a read-only bind mount (root), or the whole test as a user who cannot write it."""
    target = path.parent / f"{path.name}-ro"
    target.mkdir()
    bound = subprocess.run(["mount", "--bind", str(path), str(target)], capture_output=True, check=False)
    if bound.returncode != 0:
        target.rmdir()
        pytest.skip("cannot bind-mount here; needs root (CI runs as root)")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True, check=False)
        if remounted.returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.slow
def test_reading_commands_work_on_a_read_only_run_directory(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    baseline = tmp_path / "baseline.json"
    assert main(["leaderboard", "update", str(run_dir), "--baseline", str(baseline)]) == 0
    with _read_only(run_dir) as frozen:
        with pytest.raises(OSError):
            (frozen / "probe").touch()
        capsys.readouterr()
        for fmt in ("table", "markdown", "latex", "json", "csv"):
            assert main(["report", str(frozen), "--format", fmt]) == 0, fmt
        assert main(["report", str(frozen), "--format", "html", "--out", str(tmp_path / "page.html")]) == 0
        assert main(["leaderboard", "check", str(frozen), "--baseline", str(baseline)]) == 0
        assert main(["plugins", "--requirements", str(frozen)]) == 0
        out, err = capsys.readouterr()
        assert "passed" in out and "oodbench==" in out and "Traceback" not in err
        new = ["run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "--out", str(frozen / "new")]
        assert main(new) == 2  # a parent nobody may write in: refused before anything trains
        assert "cannot create the run directory" in _one_line(capsys.readouterr().err)
        listed = sorted(p.name for p in frozen.iterdir())
    assert listed == sorted(p.name for p in run_dir.iterdir())


@pytest.mark.slow
def test_report_while_a_run_writes_says_what_is_pending(fault_site, tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = fault_site.popen(["run", *TINY, "--seeds", "0,1,2,3", "-t", "float", "--out", str(run_dir)])
    outputs = []
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if (run_dir / STORE_NAME).exists() and query(run_dir, "SELECT count(*) FROM sqlite_master")[0][0]:
                with contextlib.suppress(sqlite3.OperationalError):
                    query(run_dir, "SELECT count(*) FROM cells")
                    capsys.readouterr()
                    code = main(["report", str(run_dir), "--format", "json"])
                    out, err = capsys.readouterr()
                    outputs.append((code, out, err))
            time.sleep(0.3)
    finally:
        process.kill() if process.poll() is None else None
    assert process.wait() == 0
    assert outputs and all(code == 0 and "Traceback" not in err for code, _, err in outputs)
    pending = [len(json.loads(out)["pending"]) for _, out, _ in outputs]
    assert max(pending) > 0 and pending == sorted(pending, reverse=True)


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused_in_one_line_naming_the_holder(fault_plugins, finished, tmp_path, capsys):
    from oodbench.runner import RunLock

    run_dir = _copy(finished, tmp_path)
    with RunLock(run_dir):
        capsys.readouterr()
        assert main(["run", "--out", str(run_dir), "--resume"]) == 2
        message = _one_line(capsys.readouterr().err)
    assert f"in use by oodbench pid {os.getpid()}" in message and "wait for it to finish" in message
