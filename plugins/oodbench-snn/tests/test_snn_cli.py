"""One epoch through the CLI on real MNIST bytes: the ``snn`` backbone found by entry point, trained, stored."""

import json

import pytest

from oodbench.cli import main
from oodbench.store import Store
from oodbench.testing import small_colored_mnist

pytestmark = pytest.mark.slow


@pytest.fixture
def small_dataset(tmp_path):
    with small_colored_mnist(tmp_path / "specs", "snn_smoke") as name:
        yield name


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
        tests = [r for r in store.results("best_test") if r["split"] == "test"]
        assert len(tests) == 3 and all(0.0 <= r["acc"] <= 1.0 for r in tests)
        dists = {p["name"]: p["dist"] for p in store.plugin_versions() if p["kind"] == "backbone"}
        assert dists == {"snn": "oodbench-snn"}
