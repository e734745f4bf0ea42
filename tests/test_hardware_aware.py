"""Hardware-aware training: weights read through a target's devices in training steps, clean everywhere else."""

from typing import Any

import pytest
import torch
from plugin_support import added_plugin
from torch import nn

from oodbench import hookimpl
from oodbench.api import PerturbingTarget
from oodbench.cli import main
from oodbench.errors import UsageError
from oodbench.hardware_aware import perturbed
from oodbench.matrix import Overrides, expand, parse_matrix
from oodbench.plugins import get_plugins
from oodbench.store import Store
from oodbench.testing import small_colored_mnist


class DropTarget:
    """A toy chip whose devices are each dead (reading 0) with probability ``p``, on Linear layers only."""

    name = "drop"
    defaults = {"p": 0.5}
    calls = 0

    def __init__(self, **hparams: Any) -> None:
        self.hparams = {**self.defaults, **hparams}

    def supports(self, backbone_name: str) -> bool:
        return True

    def deploy(self, network, calibration, seed):
        return network

    def perturb_weight(self, layer, weight, generator):
        if not isinstance(layer, nn.Linear):
            return None
        DropTarget.calls += 1
        return weight * (torch.rand(weight.shape, generator=generator) >= self.hparams["p"])


class DropPlugin:
    @hookimpl
    def oodbench_register_targets(self, register):
        register(DropTarget)


@pytest.fixture
def drop():
    with added_plugin(DropPlugin(), "drop"):
        yield


def test_the_toy_is_a_perturbing_target():
    assert isinstance(DropTarget(), PerturbingTarget)


def test_steps_see_the_devices_and_the_gradient_reaches_the_clean_weight():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    clean = {k: v.clone() for k, v in net.state_dict().items()}
    params = [id(p) for p in net.parameters()]
    x = torch.randn(8, 6)
    with perturbed(net, DropTarget(p=1.0), torch.Generator().manual_seed(1)):  # every device dead
        out = net(x)
        assert torch.equal(out, net[2].bias.expand(8, 2))  # weights read as zero: only the digital bias is left
        out.sum().backward()
    # straight through: the gradient of the first layer's weight is what the dead network's graph gives it
    assert net[2].weight.grad.abs().sum() > 0 and net[0].weight.grad.abs().sum() == 0
    assert list(net.state_dict()) == list(clean)
    assert all(torch.equal(clean[k], v) for k, v in net.state_dict().items())
    assert [id(p) for p in net.parameters()] == params  # an optimizer built before still holds these


def test_hardware_aware_names_a_perturbing_target_or_is_refused_in_one_line(drop):
    matrix = {"datasets": ["colored_mnist"], "backbones": ["mlp"], "algorithms": ["erm"], "targets": ["float"]}

    def training_key(training: dict) -> str:
        (cell,) = expand(parse_matrix({**matrix, "training": training}, "m.toml"), get_plugins(), Overrides())
        return cell.training_key

    with pytest.raises(UsageError, match=r"^m\.toml: training\.hardware_aware = 'float' is not a target that "
                                         r"perturbs weights \(allowed: .*drop"):
        training_key({"hardware_aware": "float"})
    assert training_key({"hardware_aware": ""}) == training_key({})  # off is the training of before
    assert training_key({"hardware_aware": "drop"}) != training_key({})


@pytest.mark.slow
def test_a_hardware_aware_run_trains_through_the_devices_and_keeps_clean_checkpoints(tmp_path, capsys):
    with small_colored_mnist(tmp_path / "specs", "small") as name, added_plugin(DropPlugin(), "drop"):
        DropTarget.calls = 0
        argv = ["run", "-d", name, "-b", "mlp", "-a", "erm", "-t", "float", "--epochs", "2", "--seeds", "0",
                "--set", "batch_size=64"]
        assert main([*argv, "--set", "training.hardware_aware=drop", "--out", str(tmp_path / "aware")]) == 0
        assert DropTarget.calls > 0
        assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    states = {}
    for run in ("aware", "plain"):
        with Store.in_dir(tmp_path / run) as store:
            (cell,) = store.cells("done")
        checkpoints = sorted((tmp_path / run / "checkpoints" / cell["training"]).glob("epoch-*.pt"))
        states[run] = torch.load(checkpoints[-1])
    assert list(states["aware"]) == list(states["plain"])  # clean keys, in the plain order
    assert any(not torch.equal(states["aware"][k], states["plain"][k]) for k in states["plain"])
