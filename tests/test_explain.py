"""oodbench explain: finding the cell, the last conv layer, Grad-CAM following the evidence, the CLI."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from oodbench.builtin.lenet import LeNet
from oodbench.builtin.mlp import MLP
from oodbench.cli import main
from oodbench.errors import UsageError
from oodbench.explain import Panel, class_activation_maps, draw, last_conv, select_cell
from oodbench.testing import small_dataset


@pytest.fixture(scope="module", autouse=True)
def grad_cam_installed() -> None:
    """Checked when these tests run, not at collection (grad-cam pulls in scikit-learn: seconds per process)."""
    pytest.importorskip("pytorch_grad_cam", reason="oodbench explain needs the explain extra (grad-cam)")


def cell(key, algorithm="erm", seed=0, status="done", lr=1e-3, variant=None, config=0):
    return {"key": key, "status": status, "dataset": "digit_color_shift", "backbone": "lenet",
            "algorithm": algorithm, "target": "float", "seed": seed, "config": config, "variant": variant or {},
            "hparams": {"training": {}, "algorithm": {"lr": lr}, "backbone": {}, "target": {}}}


CELLS = [cell("aa11", "erm", 0), cell("aa22", "erm", 1), cell("bb33", "rsc", 0, lr=1e-3, variant={"lr": 1e-3}),
         cell("bb44", "rsc", 0, lr=1e-2, variant={"lr": 1e-2}), cell("cc55", "irm", 0, status="failed"),
         cell("dd66", "vrex", 0), cell("dd77", "vrex", 0, lr=3e-4, config=1)]


@pytest.mark.parametrize("selector, key", [
    ("aa1", "aa11"), ("bb4", "bb44"),
    ("digit_color_shift/lenet/erm/float/seed1", "aa22"),
    ("digit_color_shift/lenet/erm/float/seed0/", "aa11"),
])
def test_a_cell_is_found_by_key_prefix_or_label(selector, key):
    assert select_cell(CELLS, selector)["key"] == key


def test_an_ambiguous_selector_lists_the_candidates_with_their_swept_values():
    with pytest.raises(UsageError) as info:
        select_cell(CELLS, "digit_color_shift/lenet/rsc")
    message = str(info.value)
    assert "matches 2 cells" in message and "bb33" in message and "[lr=0.01]" in message and "\n" not in message
    with pytest.raises(UsageError, match=r"dd77 digit_color_shift/lenet/vrex/float/seed0 \[config 1\]"):
        select_cell(CELLS, "digit_color_shift/lenet/vrex")


@pytest.mark.parametrize("selector", ["cc5", "digit_color_shift/lenet/irm", "zz", "digit_color_shift/cnn"])
def test_failed_and_unknown_cells_are_not_found(selector):
    with pytest.raises(UsageError, match="no done cell has that key prefix or label"):
        select_cell(CELLS, selector)


def test_the_layer_is_the_last_conv_and_a_network_without_one_is_refused():
    net = LeNet((3, 28, 28), 2)
    assert last_conv(net) is net.featurizer[3]
    with pytest.raises(UsageError, match="needs a conv layer.*cnn or lenet"):
        last_conv(MLP((3, 28, 28), 2))


class BlobNet(nn.Module):
    """conv 1x1 (identity) -> ReLU -> sum: class 1's logit is the total ink, class 0's its negative."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(64, 2, bias=False))
        with torch.no_grad():
            self.head[2].weight[0].fill_(-1.0)
            self.head[2].weight[1].fill_(1.0)

    def forward(self, x):
        return self.head(self.conv(x))


def test_the_map_lights_up_where_the_evidence_is():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, :3, :3] = 1.0  # top-left blob
    x[1, 0, 5:, 6:] = 1.0  # bottom-right blob
    maps, predicted = class_activation_maps(BlobNet(), x)
    assert predicted.tolist() == [1, 1] and maps.shape == (2, 8, 8)
    blob = x[:, 0].numpy() > 0
    assert (maps[blob] > 0.99).all() and (maps[~blob] < 0.01).all()


def test_the_grid_has_two_rows_per_environment(tmp_path):
    x = torch.rand(3, 3, 28, 28)
    panel = Panel("test_random", x, torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0]), torch.rand(3, 28, 28).numpy())
    one = draw([panel], "title", tmp_path / "one.png")
    two = draw([panel, panel], "title", tmp_path / "sub" / "two.png")
    assert Image.open(two).height > 1.5 * Image.open(one).height


def test_a_directory_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--cell", "x", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and err.count("\n") == 1


@pytest.mark.slow
def test_explain_a_one_epoch_lenet_run(tmp_path, capsys):
    run = tmp_path / "run"
    with small_dataset(tmp_path / "specs", "dcs", "digit_color_shift"):
        assert main(["run", "-d", "dcs", "-b", "lenet", "-b", "mlp", "-a", "erm", "--epochs", "1",
                     "--set", "batch_size=128", "--set", "train_eval_size=200", "--out", str(run)]) == 0
        out = tmp_path / "cam.png"
        capsys.readouterr()
        assert main(["explain", str(run), "--cell", "dcs/lenet", "--out", str(out), "--n", "4",
                     "--env", "test_random", "--selection", "last"]) == 0
        assert "wrote" in capsys.readouterr().out and Image.open(out).width > 300
        for argv, message in [(["--cell", "dcs/mlp"], "needs a conv layer"),
                              (["--cell", "dcs/lenet", "--env", "train_red"], "not a test environment"),
                              (["--cell", "dcs"], "matches 2 cells")]:
            assert main(["explain", str(run), "--out", str(out), *argv]) == 2
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1
