"""One epoch through the CLI on real MNIST bytes: the ``snn`` backbone found by entry point, trained, stored."""

import json

import pytest

from oodbench.cli import main
from oodbench.data.catalog import PATH_ENV
from oodbench.plugins import reset_plugins
from oodbench.store import Store

pytestmark = pytest.mark.slow

# colored_mnist's construction on 500 images per environment, so an epoch takes seconds, not minutes
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

[[environments]]
name = "source"
role = "source"
start = 0
stop = 1_000
noise = 0.0
transforms = ["grayscale"]
attribute = { relation = "uniform" }
"""


@pytest.fixture
def small_dataset(tmp_path, monkeypatch):
    directory = tmp_path / "specs"
    directory.mkdir()
    (directory / "snn_smoke.toml").write_text(SMALL_COLORED_MNIST)
    monkeypatch.setenv(PATH_ENV, str(directory))
    reset_plugins()
    yield "snn_smoke"
    reset_plugins()


def test_the_backbone_is_listed_from_its_distribution(capsys):
    assert main(["list", "backbones", "--json"]) == 0
    listed = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert listed["snn"]["dist"] == "oodbench-snn"


def test_one_epoch_of_causal_and_feature_level_methods_on_the_snn(small_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "-d", small_dataset, "-b", "snn", "-a", "bi_loss", "-a", "dann", "-a", "rsc", "-t", "float",
            "--epochs", "1", "--seeds", "0", "--set", "batch_size=64", "--set", "snn.steps=2", "--out", str(run_dir)]
    assert main(argv) == 0, capsys.readouterr().out
    with Store.in_dir(run_dir) as store:
        cells = store.cells()
        assert sorted(c["algorithm"] for c in cells) == ["bi_loss", "dann", "rsc"]
        assert all(c["status"] == "done" and c["backbone"] == "snn" for c in cells)
        assert all(c["hparams"]["backbone"]["steps"] == 2 for c in cells)
        tests = [r for r in store.results("oracle") if r["split"] == "test"]
        assert len(tests) == 3 and all(0.0 <= r["acc"] <= 1.0 for r in tests)
        dists = {p["name"]: p["dist"] for p in store.plugin_versions() if p["kind"] == "backbone"}
        assert dists == {"snn": "oodbench-snn"}
