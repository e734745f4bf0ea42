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
