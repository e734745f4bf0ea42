"""Contracts a plugin author codes against: a SingleModel subclass's defaults extend lr and weight_decay, and a
backbone without featurizer, classifier or n_features fails its cells with one line naming the plugin."""

from __future__ import annotations

from oodbench.api import SingleModel
from oodbench.cli import main
from oodbench.matrix import Overrides, expand, parse_matrix
from oodbench.store import Store
from oodbench.testing import small_colored_mnist

PENALISED = '''
import torch.nn.functional as F
from oodbench import hookimpl
from oodbench.api import LogUniform, SingleModel, pooled


class Penalised(SingleModel):
    """Cross-entropy plus a weight on the logits' norm: declares only its own hyperparameter."""

    name = "penalised"
    defaults = {"penalty": 0.1}
    search_space = {"penalty": LogUniform(1e-3, 1.0)}

    def objective(self, batches):
        batch = pooled(batches)
        logits = self.model(batch.x)
        return F.cross_entropy(logits, batch.y) + self.hparams["penalty"] * logits.pow(2).mean(), {}


@hookimpl
def oodbench_register_algorithms(register):
    register(Penalised)
'''

FLAT = '''
import math
from torch import nn
from oodbench import hookimpl


class Flat(nn.Module):
    """A linear model with no featurizer/classifier split."""

    name = "flat"
    defaults = {}

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x):
        return self.net(x)


@hookimpl
def oodbench_register_backbones(register):
    register(Flat)
'''


def test_a_subclass_declaring_its_own_defaults_keeps_the_optimisers(fake_site):
    fake_site.add_dist("oodbench-penalised", {"penalised": "fake_penalised"}, {"fake_penalised": PENALISED})
    plugins = fake_site.load()
    algorithm = plugins.registry("algorithms").get("penalised")
    assert algorithm.defaults == {"lr": 1e-3, "weight_decay": 0.0, "penalty": 0.1}
    assert set(algorithm.search_space) == {"lr", "weight_decay", "penalty"}
    assert SingleModel.defaults == {"lr": 1e-3, "weight_decay": 0.0}  # the base is not changed by its subclasses
    matrix = parse_matrix({"datasets": ["colored_mnist"], "backbones": ["mlp"], "algorithms": ["penalised"],
                           "targets": ["float"]}, "test.toml")
    (cell,) = expand(matrix, plugins, Overrides(sets=[("penalised.penalty", 0.5), ("lr", 3e-4)]))
    assert cell.algorithm_hparams == {"lr": 3e-4, "weight_decay": 0.0, "penalty": 0.5}


def test_a_backbone_without_the_featurizer_split_fails_its_cell_naming_the_plugin(fake_site, tmp_path, capsys):
    fake_site.add_dist("oodbench-flat", {"flat": "fake_flat"}, {"fake_flat": FLAT}, version="0.3.0")
    with small_colored_mnist(tmp_path / "specs", "tiny_flat"):
        fake_site.load()
        run_dir = tmp_path / "run"
        code = main(["run", "-d", "tiny_flat", "-b", "flat", "-a", "erm", "-t", "float", "--epochs", "1",
                     "--seeds", "0", "--out", str(run_dir)])
    assert code == 1
    with Store.in_dir(run_dir, readonly=True) as store:
        (cell,) = store.cells()
    assert cell["status"] == "failed"
    assert "backbone 'flat' from oodbench-flat 0.3.0 lacks featurizer, classifier, n_features (int)" in cell["error"]
    assert "oodbench.api.Backbone" in cell["error"] and "\n" not in cell["error"]


SHAPE_BUG = '''
import torch
import torch.nn.functional as F
from oodbench import hookimpl
from oodbench.api import SingleModel, pooled


class ShapeBug(SingleModel):
    """Hands cross_entropy labels of the wrong length: torch raises, deep inside itself."""

    name = "shape_bug"

    def objective(self, batches):
        batch = pooled(batches)
        return F.cross_entropy(self.model(batch.x), batch.y[:1]), {}


@hookimpl
def oodbench_register_algorithms(register):
    register(ShapeBug)
'''


def test_a_failure_inside_torch_names_the_plugins_line_and_keeps_the_traceback(fake_site, tmp_path, capsys):
    fake_site.add_dist("oodbench-shape-bug", {"shape_bug": "fake_shape_bug"}, {"fake_shape_bug": SHAPE_BUG})
    with small_colored_mnist(tmp_path / "specs", "tiny_bug"):
        fake_site.load()
        run_dir = tmp_path / "run"
        assert main(["run", "-d", "tiny_bug", "-b", "mlp", "-a", "shape_bug", "-t", "float", "--epochs", "1",
                     "--seeds", "0", "--out", str(run_dir)]) == 1
    with Store.in_dir(run_dir, readonly=True) as store:
        (cell,) = store.cells()
    assert "(at fake_shape_bug.py:15)" in cell["error"] and "Expected input batch_size" in cell["error"]
    capsys.readouterr()
    assert main(["report", str(run_dir), "--failed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 failed cell(s)") and "tiny_bug/mlp/shape_bug/float/seed0" in out
    assert "Traceback (most recent call last)" in out and 'fake_shape_bug.py", line 15, in objective' in out
    assert "torch/nn/functional.py" in out  # the frames below the plugin's line are all there
