"""Device draws of a stochastic target: seeds, averaging, storage, the report's spread column, and a real run."""

import json
import os
import statistics
import subprocess
import sys
from typing import Any

import pytest
import torch
from plugin_support import added_plugin
from store_support import SPLITS, VERSIONS

from oodbench import hookimpl
from oodbench.cli import main
from oodbench.draws import draw_seed
from oodbench.errors import UsageError
from oodbench.matrix import Cell, Overrides, expand, parse_matrix
from oodbench.metrics import EnvMetrics, mean_over_draws
from oodbench.plugins import get_plugins
from oodbench.render import render
from oodbench.store import Store
from oodbench.testing import small_colored_mnist
from oodbench.train import CellResult, TrainingResult


class JitterTarget:
    """A stochastic toy chip: a seeded offset N(0, spread^2) on each output's bias, which moves the decision
    threshold (in place: the harness hands each draw its own copy)."""

    name = "jitter"
    defaults = {"spread": 3.0, "draws": 1}

    def __init__(self, **hparams: Any) -> None:
        self.hparams = {**self.defaults, **hparams}

    def supports(self, backbone_name: str) -> bool:
        return True

    def deploy(self, network, calibration, seed):
        generator = torch.Generator().manual_seed(seed)
        bias = list(network.parameters())[-1]
        with torch.no_grad():
            bias.add_(self.hparams["spread"] * torch.randn(bias.shape, generator=generator))
        return network


class JitterPlugin:
    @hookimpl
    def oodbench_register_targets(self, register):
        register(JitterTarget)


@pytest.fixture
def jitter():
    with added_plugin(JitterPlugin(), "jitter"):
        yield


def _m(acc, groups):
    return EnvMetrics(acc, abs(acc - 0.75) * 100, min(groups.values()), statistics.fmean(groups.values()), groups,
                      100, 0.75)


def test_draw_zero_is_the_cells_own_seed_and_the_others_never_collide():
    assert [draw_seed(s, 0) for s in range(5)] == list(range(5))
    seeds = {draw_seed(s, i) for s in range(20) for i in range(1, 50)}
    assert len(seeds) == 20 * 49 and not seeds & set(range(20))


def test_draw_seeds_do_not_depend_on_the_interpreter():
    """Python's str hash is salted per process; a draw's seed must not be."""
    code = "from oodbench.draws import draw_seed; print([draw_seed(3, i) for i in range(4)])"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=dict(os.environ, PYTHONHASHSEED=salt)).stdout for salt in ("1", "2")}
    assert len(outputs) == 1 and json.loads(outputs.pop()) == [draw_seed(3, i) for i in range(4)]


def test_the_mean_chip_keeps_each_draws_own_worst_group():
    """Two chips that each fail a different group: the averaged groups are 0.6 and 0.6, but every chip's worst
    group is 0.2, and that is what a user of one chip gets."""
    mean = mean_over_draws([_m(0.7, {0: 1.0, 1: 0.2}), _m(0.5, {0: 0.2, 1: 1.0})])
    assert mean.acc == pytest.approx(0.6)
    assert mean.worst_group_acc == pytest.approx(0.2)
    assert mean.group_acc == pytest.approx({0: 0.6, 1: 0.6})
    assert mean.gap == pytest.approx(15.0)  # |0.6 - 0.75| in points: the gap of the mean accuracy


def test_draws_out_of_range_are_refused_in_one_line(jitter):
    matrix = {"datasets": ["colored_mnist"], "backbones": ["mlp"], "algorithms": ["erm"], "targets": ["jitter"]}
    for bad in (0, 1001):
        with pytest.raises(UsageError, match=r"^m\.toml: hparams\.jitter\.draws: .*\[1, 1000\]"):
            expand(parse_matrix({**matrix, "hparams": {"jitter": {"draws": bad}}}, "m.toml"), get_plugins(),
                   Overrides())
    (cell,) = expand(parse_matrix({**matrix, "hparams": {"jitter": {"draws": 12}}}, "m.toml"), get_plugins(),
                     Overrides())
    assert cell.target_hparams["draws"] == 12


def _record_stochastic(store, seed, draw_accs):
    cell = Cell("colored_mnist", "cnn", "erm", "jitter", seed, {"epochs": 1}, {}, {}, {"draws": len(draw_accs)})
    store.plan([cell])
    flat = {name: _m(0.8, {0: 0.8}) for name in ("train1", "train1/val", "train1/idtest", "test/holdout")}
    store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS,
                                         curves=[{**flat, "test": _m(0.5, {0: 0.5})}], stats=[{"loss": 0.5}],
                                         selected={"last": 1}))
    draws = [{**flat, "test": _m(a, {0: a, 1: a - 0.1})} for a in draw_accs]
    store.record_cell(CellResult(cell.key, "done", selected={"last": 1},
                                 results={"last": {name: mean_over_draws([d[name] for d in draws]) for name in draws[0]}},
                                 draws={"last": draws}, splits=SPLITS), VERSIONS)


def test_the_report_gives_the_spread_between_chips_apart_from_the_spread_between_seeds(tmp_path):
    with Store.in_dir(tmp_path) as store:
        _record_stochastic(store, 0, [0.60, 0.70, 0.80])  # sd over draws 0.1
        _record_stochastic(store, 1, [0.50, 0.50, 0.56])  # sd 0.0346
        assert len(store.draws("last")[(store.cells()[0]["key"], "test")]) == 3
        report = json.loads(render(store, "json", "oracle"))
        markdown = render(store, "markdown", "oracle")
    (row,) = report["rows"]
    assert row["draws"] == [3, 3]
    assert row["acc"]["mean"] == pytest.approx((0.7 + 0.52) / 2)  # each seed's mean chip, then over seeds
    assert row["draw_sd_acc"]["mean"] == pytest.approx((0.1 + statistics.stdev([0.5, 0.5, 0.56])) / 2)
    assert row["draw_sd_worst_group_acc"]["mean"] == pytest.approx(row["draw_sd_acc"]["mean"])
    header = next(line for line in markdown.splitlines() if line.startswith("| algorithm"))
    assert "acc sd over draws %" in header and "draws" in header
    line = next(line for line in markdown.splitlines() if line.startswith("| erm"))
    assert f"| {(0.1 + statistics.stdev([0.5, 0.5, 0.56])) / 2 * 100:.1f} " in line


def test_a_deterministic_target_has_no_draw_columns(tmp_path):
    with Store.in_dir(tmp_path) as store:
        cell = Cell("colored_mnist", "cnn", "erm", "float", 0, {"epochs": 1}, {}, {}, {})
        store.plan([cell])
        metrics = {name: _m(0.8, {0: 0.8}) for name in ("train1", "train1/val", "train1/idtest", "test", "test/holdout")}
        store.record_training(TrainingResult(cell.training_key, "done", splits=SPLITS, curves=[metrics],
                                             stats=[{"loss": 0.5}], selected={"last": 1}))
        store.record_cell(CellResult(cell.key, "done", selected={"last": 1}, results={"last": metrics}, splits=SPLITS),
                          VERSIONS)
        assert "sd over draws" not in render(store, "markdown", "oracle")


@pytest.fixture
def small(tmp_path):
    with small_colored_mnist(tmp_path / "specs", "small") as name:
        yield name


def _draw_rows(run_dir):
    with Store.in_dir(run_dir) as store:
        (cell,) = store.cells("done")
        means = {r["split"]: r["acc"] for r in store.results("last")}
        draws = {split: [d["acc"] for d in rows] for (_, split), rows in store.draws("last").items()}
    return cell, means, draws


@pytest.mark.slow
def test_a_real_run_keeps_every_chip_and_scores_their_mean(small, jitter, tmp_path, capsys):
    argv = ["run", "-d", small, "-b", "mlp", "-a", "erm", "-t", "jitter", "--epochs", "1", "--seeds", "0",
            "--set", "batch_size=64"]
    assert main([*argv, "--set", "jitter.draws=4", "--out", str(tmp_path / "four")]) == 0
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    cell, means, draws = _draw_rows(tmp_path / "four")
    test = next(name for name in draws if name.startswith("test") and "/" not in name)
    assert len(draws[test]) == 4 and len(set(draws[test])) > 1  # four different chips
    for split, accs in draws.items():
        assert means[split] == pytest.approx(statistics.fmean(accs))
    _, one_means, one_draws = _draw_rows(tmp_path / "one")
    assert one_draws[test] == [draws[test][0]]  # draw 0 is the single deployment of draws = 1
    assert one_means[test] == draws[test][0]
