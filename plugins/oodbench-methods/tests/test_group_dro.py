"""GroupDRO's group losses and exponentiated-gradient weights, in batch and online mode."""

import pytest
import torch
from torch import nn

from oodbench.api import Batch, make_groups
from oodbench_methods.group_dro import GroupDRO, exponentiated_step, group_losses
from toys import TinyConv, task


def test_group_losses_average_within_each_present_group():
    losses, present = group_losses(torch.tensor([1.0, 3.0, 2.0, 5.0]), torch.tensor([0, 0, 2, 2]), 4)
    assert losses.tolist() == [2.0, 0.0, 3.5, 0.0]
    assert present.tolist() == [True, False, True, False]


def test_q_moves_toward_the_worse_group_and_stays_a_distribution():
    q = torch.full((4,), 0.25)
    new = exponentiated_step(q, torch.tensor([1.0, 0.0, 3.0, 0.0]), torch.tensor([True, False, True, False]), 0.5)
    assert new.sum().item() == pytest.approx(1.0)
    assert new.argmax().item() == 2 and new[2] > 0.25
    assert new[1] == new[3]  # absent groups keep their ratio
    assert new[0] / new[1] == pytest.approx(torch.exp(torch.tensor(0.5)).item())


def _biased_algo(mode="batch", **hparams):
    """A model that predicts label 0 for everything: groups with y = 1 have the larger loss."""
    algo = GroupDRO(TinyConv, task(), dict(GroupDRO.defaults, mode=mode, **hparams))
    with torch.no_grad():
        for p in algo.model.parameters():
            p.zero_()
        algo.model.classifier.bias.copy_(torch.tensor([2.0, -2.0]))
    return algo


def _batch():
    y = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1])
    attribute = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1])
    return Batch(torch.rand(8, 2, 4, 4), y, torch.zeros(8, dtype=torch.long), make_groups(y, attribute, 2), attribute)


def test_one_step_shifts_q_to_the_groups_the_model_gets_wrong():
    algo = _biased_algo()
    loss, stats = algo.objective([_batch()])
    assert algo.q.sum().item() == pytest.approx(1.0)
    assert min(algo.q[2].item(), algo.q[3].item()) > 0.25 > max(algo.q[0].item(), algo.q[1].item())
    per_group, present = group_losses(torch.nn.functional.cross_entropy(
        algo.model(_batch().x), _batch().y, reduction="none"), _batch().group, 4)
    assert loss.item() == pytest.approx((algo.q * per_group)[present].sum().item(), rel=1e-5)
    assert "q" in algo.state_dict()


def test_online_mode_scales_the_step_by_q_of_the_sampled_group():
    torch.manual_seed(0)
    algo = _biased_algo("online", eta=0.1, weight_decay=0.001)
    assert algo.optimizer.param_groups[0]["weight_decay"] == 0  # L2 goes into the loss instead
    stats = algo.update([_batch()])
    assert algo.q.sum().item() == pytest.approx(1.0)
    assert algo.q[2] + algo.q[3] > 0.5
    lr = algo.optimizer.param_groups[0]["lr"]
    assert any(lr == pytest.approx(1e-3 * q) for q in algo.q.tolist())
    assert stats["loss"] > 0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        GroupDRO(TinyConv, task(), dict(GroupDRO.defaults, mode="offline"))
