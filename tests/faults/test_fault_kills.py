"""SIGKILL at the moments a run can die, then ``--resume``: every cell once, no duplicate curve rows, and the
very numbers of an uninterrupted run. Also a killed pool worker, a stale lock, and workers of a killed run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import TINY, assert_complete_once, query, results

pytestmark = pytest.mark.slow

SEEDS = ["--seeds", "0,1"]
TARGETS = ["-t", "float", "-t", "faulty_float"]
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(fault_site, tmp_path_factory):
    """The uninterrupted run every resumed one must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = fault_site.run(["run", *TINY, *SEEDS, *TARGETS, "--out", str(run_dir)])
    assert done.returncode == 0, done.stderr
    return results(run_dir)


@pytest.mark.parametrize("fault", [
    "build:0",  # the first dataset built, nothing trained yet
    "update:0:5",  # mid-epoch in the first training
    "deploy",  # while a target deploys: the float cell of the same training is committed just before
    "build:1",  # right after seed 0's cells were committed
    "update:1:12",  # mid-epoch of the second epoch of the second training
])
def test_sigkill_then_resume_reproduces_the_uninterrupted_run(fault_site, reference, tmp_path, fault):
    run_dir, once = tmp_path / "run", tmp_path / "armed"
    once.touch()
    killed = fault_site.run(["run", *TINY, *SEEDS, *TARGETS, "--out", str(run_dir)], fault=fault, once=once)
    assert killed.returncode == KILLED, killed.stderr
    assert not once.exists()  # the fault fired
    assert (run_dir / ".oodbench.lock").is_file()  # a stale lock, left by the kill: it must not block the resume
    resumed = fault_site.run(["run", "--out", str(run_dir), "--resume"], fault=fault, once=once)
    assert resumed.returncode == 0, resumed.stderr
    assert_complete_once(run_dir, cells=4, trainings=2)
    assert results(run_dir) == reference
    assert not list(run_dir.rglob("*.partial"))
    meta = {key: json.loads(value) for key, value in query(run_dir, "SELECT key, value FROM meta")}
    assert meta["argv"][:2] == ["run", "-d"]  # the command that started the run is kept...
    assert [r["argv"] for r in meta["resumes"]] == [["run", "--out", str(run_dir), "--resume"]]  # ...beside each resume


def test_a_pool_worker_killed_mid_job_is_retried_and_nothing_else_fails(fault_site, reference, tmp_path):
    run_dir, once = tmp_path / "run", tmp_path / "armed"
    once.touch()
    done = fault_site.run(["run", *TINY, *SEEDS, *TARGETS, "--executor", "process", "--jobs", "2",
                           "--out", str(run_dir)], fault="update:1:5", once=once)
    assert done.returncode == 0, done.stderr
    assert not once.exists()
    assert_complete_once(run_dir, cells=4, trainings=2)
    assert results(run_dir) == reference  # one torch thread per worker, as in the reference


def test_a_job_that_kills_every_worker_fails_alone(fault_site, tmp_path):
    run_dir = tmp_path / "run"
    done = fault_site.run(["run", *TINY, "--seeds", "0,1,2", "-t", "float", "--executor", "process", "--jobs", "2",
                           "--out", str(run_dir)], fault="update:1:5")
    assert done.returncode == 1, done.stderr
    rows = query(run_dir, "SELECT seed, status, error FROM cells ORDER BY seed")
    assert [(seed, status) for seed, status, _ in rows] == [(0, "done"), (1, "failed"), (2, "done")]
    assert "worker process died twice" in rows[1][2] and "alone" in rows[1][2]
    assert "Traceback" not in done.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc (Linux)")
def test_workers_of_a_killed_run_exit_with_it(fault_site, tmp_path):
    run_dir = tmp_path / "run"
    process = fault_site.popen(["run", *TINY, "--seeds", "0,1,2,3", "--epochs", "50", "-t", "float",
                                "--executor", "process", "--jobs", "2", "--out", str(run_dir)])
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:
        assert process.poll() is None, process.stderr.read()
        workers = {p for p in _children(process.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()}
        time.sleep(0.2)
    assert len(workers) >= 2, "the pool never started its workers"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed run"
