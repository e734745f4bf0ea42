"""SIGKILL a real ``oodbench run`` after its first cell is stored; ``--resume`` finishes the matrix and keeps every
cell that was finished, exactly once and untouched."""

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from cli_support import subprocess_env

from oodbench.store import STORE_NAME

CLI = [sys.executable, "-m", "oodbench.cli"]
SEEDS = 2
EPOCHS = 1
DEADLINE_S = 300


def _query(path, sql):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _wait_for_a_done_cell(process, store):
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before it could be killed")
        if store.exists():
            try:
                if _query(store, "SELECT count(*) FROM cells WHERE status = 'done'")[0][0] >= 1:
                    return
            except sqlite3.OperationalError:  # the schema is still being created
                pass
        time.sleep(0.05)
    process.kill()
    pytest.fail("no cell finished in time")


@pytest.mark.slow
def test_sigkill_mid_matrix_then_resume_keeps_every_finished_cell_once(tmp_path):
    run_dir = tmp_path / "run"
    store = run_dir / STORE_NAME
    argv = [*CLI, "run", "-d", "colored_mnist", "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", str(EPOCHS),
            "--seeds", ",".join(map(str, range(SEEDS))), "--set", "batch_size=512", "--set", "train_eval_size=1000",
            "--out", str(run_dir)]
    process = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_a_done_cell(process, store)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL

    done = _query(store, "SELECT key, updated_at, duration_s FROM cells WHERE status = 'done'")
    kept = _query(store, "SELECT * FROM results ORDER BY cell, checkpoint, split")
    statuses = [s for (s,) in _query(store, "SELECT status FROM cells")]
    assert len(statuses) == SEEDS and "pending" in statuses, f"killed too late to test anything: {statuses}"

    resumed = subprocess.run([*CLI, "run", "--out", str(run_dir), "--resume"], env=subprocess_env(),
                             capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    assert resumed.returncode == 0, resumed.stderr

    cells = _query(store, "SELECT key, status, updated_at, duration_s FROM cells")
    assert len(cells) == SEEDS and {status for _, status, _, _ in cells} == {"done"}
    # the cells finished before the kill are the very rows written then: not retrained, not rewritten
    assert {(key, updated, duration) for key, _, updated, duration in cells} >= set(done)
    done_keys = {key for key, _, _ in done}
    assert [r for r in _query(store, "SELECT * FROM results ORDER BY cell, checkpoint, split")
            if r[0] in done_keys] == kept
    # exactly once: one row per cell, rule and split; one training per seed with one curve row per epoch and split
    per_cell = _query(store, "SELECT cell, count(*), count(DISTINCT checkpoint || split) FROM results GROUP BY cell")
    assert len(per_cell) == SEEDS and all(n == distinct > 0 for _, n, distinct in per_cell)
    assert len({n for _, n, _ in per_cell}) == 1
    assert _query(store, "SELECT count(*), count(DISTINCT key) FROM trainings WHERE status = 'done'") == [(SEEDS, SEEDS)]
    curves = _query(store, "SELECT training, count(*), count(DISTINCT epoch), count(DISTINCT split) FROM curves "
                           "GROUP BY training")
    assert len(curves) == SEEDS and all(n == epochs * splits and epochs == EPOCHS for _, n, epochs, splits in curves)
