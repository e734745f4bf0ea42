"""The process pool and Ray give the same stored metrics as the in-process executor for the same seeds.

Each run is the real CLI on ColoredMNIST's construction cut to 500 real MNIST
images per environment (MLP, one epoch), two seeds so the pool and Ray
really run jobs side by side. Only the driver writes the store.
"""

import subprocess
import sys

import pytest

from oodbench.cli import main
from oodbench.errors import UsageError
from oodbench.executors import make_executor
from oodbench.store import Store
from oodbench.testing import small_colored_mnist

TINY = ["run", "-d", "small", "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", "1", "--seeds", "0,1",
        "--set", "batch_size=64"]


@pytest.fixture(scope="module", autouse=True)
def small(tmp_path_factory):
    with small_colored_mnist(tmp_path_factory.mktemp("specs"), "small") as name:
        yield name


def _stored(run_dir):
    """Every stored metric of every cell and every training curve, keyed so runs can be compared."""
    with Store.in_dir(run_dir) as store:
        assert {c["status"] for c in store.cells()} == {"done"}
        results = {(r["cell"], r["checkpoint"], r["split"]): (r["epoch"], r["acc"], r["gap"], r["worst_group_acc"],
                                                              r["avg_group_acc"], r["n"])
                   for checkpoint in ("last", "best_val", "best_test") for r in store.results(checkpoint)}
        curves = {(c["training"], c["epoch"], c["split"]): c["acc"] for c in store.curves()}
        executor = store.meta()["executor"]
    return results, curves, executor


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local") / "run"
    assert main([*TINY, "--out", str(run_dir)]) == 0
    return _stored(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["process", "ray"])
def test_executor_matches_local(executor, local_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*TINY, "--executor", executor, "--jobs", "2", "--out", str(run_dir)]) == 0
    results, curves, recorded = _stored(run_dir)
    local_results, local_curves, _ = local_run
    assert recorded == executor
    assert len(results) == len(local_results) > 0 and {cell for cell, _, _ in results} == {
        cell for cell, _, _ in local_results}
    assert results == local_results
    assert curves == local_curves
    capsys.readouterr()


def test_ray_is_not_imported_by_the_core():
    code = ("import sys, oodbench.cli, oodbench.runner, oodbench.executors; "
            "print(sorted(m for m in ('ray', 'matplotlib', 'selenium') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_address_needs_the_ray_executor():
    with pytest.raises(UsageError, match="--address .* only --executor ray"):
        make_executor("process", 2, "auto")
    with pytest.raises(UsageError, match="allowed: local, process, ray"):
        make_executor("dask")


@pytest.mark.slow
@pytest.mark.parametrize("declared, expected", [("threads = 1\n", 1), ("", 2)])
def test_a_matrix_pins_the_torch_threads_of_every_training(small, tmp_path, monkeypatch, declared, expected):
    """A matrix's ``threads`` holds for each training whatever torch was given (here 2 threads, the local
    executor's share), and the given count comes back after; without it the training keeps what it was given."""
    import torch

    from oodbench import train

    seen = []
    original = train._run_job
    monkeypatch.setattr(train, "_run_job", lambda *a: (seen.append(torch.get_num_threads()), original(*a)))
    matrix = tmp_path / "pinned.toml"
    matrix.write_text(f'{declared}datasets = ["{small}"]\nbackbones = ["mlp"]\nalgorithms = ["erm"]\n'
                      f'seeds = [0, 1]\n[training]\nepochs = 1\nbatch_size = 64\n')
    given = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["run", "--matrix", str(matrix), "--out", str(tmp_path / "run")]) == 0
        assert seen == [expected, expected] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(given)
