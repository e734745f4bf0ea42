"""One epoch through the CLI on real MNIST bytes: the float network trained once, deployed to float and memristor."""

import json

import pytest

from oodbench.cli import main
from oodbench.store import Store
from oodbench.testing import small_colored_mnist

pytestmark = pytest.mark.slow


@pytest.fixture
def small_dataset(tmp_path):
    with small_colored_mnist(tmp_path / "specs", "memristor_smoke") as name:
        yield name


def test_one_cell_on_float_and_on_the_ideal_memristor(small_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "-d", small_dataset, "-b", "cnn", "-a", "erm", "-t", "float", "-t", "memristor", "--epochs", "1",
            "--seeds", "0", "--set", "batch_size=64", "--set", "memristor.adc_bits=6", "--out", str(run_dir)]
    assert main(argv) == 0, capsys.readouterr().out
    capsys.readouterr()
    with Store.in_dir(run_dir) as store:
        cells = {c["target"]: c for c in store.cells()}
        assert set(cells) == {"float", "memristor"} and all(c["status"] == "done" for c in cells.values())
        assert cells["float"]["training"] == cells["memristor"]["training"]  # one training, two deployments
        recorded = cells["memristor"]["hparams"]["target"]
        assert recorded["adc_bits"] == 6 and recorded["tile_rows"] == 128 and recorded["r_off"] == 1000.0
        tests = {r["target"]: r for r in store.results("last") if r["split"] == "test"}
        assert tests["float"]["n"] == tests["memristor"]["n"] == 450
        assert abs(tests["memristor"]["acc"] - tests["float"]["acc"]) <= 0.05
        dists = {p["name"]: p["dist"] for p in store.plugin_versions() if p["kind"] == "target"}
        assert dists["memristor"] == "oodbench-memristor"
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    assert {row["target"] for row in json.loads(capsys.readouterr().out)["rows"]} == {"float", "memristor"}
