"""One epoch through the CLI on real MNIST bytes: the float network trained once, deployed to float and memristor."""

import json

import pytest

from oodbench.cli import main
from oodbench.data.catalog import PATH_ENV
from oodbench.plugins import reset_plugins
from oodbench.store import Store

pytest.importorskip("memtorch", reason="memtorch is not installed: run plugins/oodbench-memristor/install-memtorch.sh")

pytestmark = pytest.mark.slow

# colored_mnist's construction on 500 images per environment, so training and evaluation take seconds
SMALL_COLORED_MNIST = """
description = "colored_mnist, 500 images per environment: a quick end-to-end run"
images = "train"
size = 28
layout = "red_green"
swap_channels = [1, 0]

[label]
threshold = 5
positive = "above"
noise = 0.25

[attribute]
name = "color"
values = ["red", "green"]
render = "digit"
background = "black"

[[environments]]
name = "train1"
role = "train"
start = 0
stop = 500
attribute = { relation = "label", flip = 0.2 }

[[environments]]
name = "train2"
role = "train"
start = 500
stop = 1_000
attribute = { relation = "label", flip = 0.1 }

[[environments]]
name = "test"
role = "test"
start = 40_000
stop = 40_500
attribute = { relation = "label", flip = 0.9 }
"""


@pytest.fixture
def small_dataset(tmp_path, monkeypatch):
    directory = tmp_path / "specs"
    directory.mkdir()
    (directory / "memristor_smoke.toml").write_text(SMALL_COLORED_MNIST)
    monkeypatch.setenv(PATH_ENV, str(directory))
    reset_plugins()
    yield "memristor_smoke"
    reset_plugins()


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
