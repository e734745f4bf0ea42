"""RSC's masks: exactly the top-p channels or positions, the confidence-guided correction, the split."""

import pytest
import torch

from oodbench_methods.rsc import RSC, channel_mask, flatten_index, most_challenged, mute_top, spatial_mask
from toys import TinyConv, TinyDense, batch, task


def test_mute_top_zeroes_exactly_the_largest_fraction_of_each_row():
    importance = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    mask = mute_top(importance, 1 / 3)
    assert mask.tolist() == [[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1]]
    assert mute_top(importance, 0.0).eq(1).all()
    assert mute_top(torch.rand(1, 100), 0.29).eq(0).sum() == 29


def test_channel_mask_mutes_the_channels_with_largest_mean_absolute_gradient():
    grad = torch.zeros(1, 3, 2, 2)
    grad[0, 0] = 0.5
    grad[0, 1] = torch.tensor([[-4.0, 0.0], [0.0, 0.0]])  # mean |g| 1.0: the largest, though negative
    grad[0, 2] = 0.8
    mask = channel_mask(grad, 1 / 3)
    assert mask.shape == (1, 3, 1, 1)
    assert mask.flatten().tolist() == [1, 0, 1]


def test_spatial_mask_mutes_the_positions_with_largest_mean_absolute_gradient():
    grad = torch.full((2, 2, 3, 3), 0.1)
    grad[0, :, 1, 2] = -3.0
    grad[0, 0, 0, 0] = 4.0  # mean over channels 2.05 < 3.0
    grad[1, 1, 2, 1] = 9.0
    mask = spatial_mask(grad, 2 / 9)
    assert mask.shape == (2, 1, 3, 3)
    assert (mask[0, 0] == 0).nonzero().tolist() == [[0, 0], [1, 2]]
    assert (mask[1, 0] == 0).sum() == 2 and mask[1, 0, 2, 1] == 0


def test_most_challenged_keeps_the_mask_for_the_largest_confidence_drops():
    drop = torch.tensor([0.1, 0.5, -0.2, 0.3, 0.0, 0.4])
    assert most_challenged(drop, 1 / 3).tolist() == [False, True, False, False, False, True]
    assert not most_challenged(drop, 0.0).any()


def test_the_split_is_at_the_flatten_and_a_backbone_without_a_feature_map_is_declined():
    assert flatten_index(TinyConv(), "rsc") == 2
    with pytest.raises(ValueError, match="rsc needs a conv feature map.*tiny_dense"):
        RSC(TinyDense, task(), dict(RSC.defaults))


@pytest.mark.parametrize("seed", range(4))  # both branches of the random channel/spatial choice
def test_self_challenge_mutes_top_p_of_every_sample_when_all_are_challenged(seed):
    torch.manual_seed(seed)
    algo = RSC(TinyConv, task(), dict(RSC.defaults, batch_pct=1.0, drop_pct=1 / 3))
    b = batch(6, 0, 1)
    z = algo.feature_map(b.x)
    mask = algo.self_challenge(z, b.y)
    if mask.shape[1] == 1:  # spatial: 16 positions -> 5 muted
        assert mask.shape == (6, 1, 4, 4) and mask.eq(0).flatten(1).sum(1).tolist() == [5] * 6
    else:  # channel: 3 channels -> 1 muted
        assert mask.shape == (6, 3, 1, 1) and mask.eq(0).flatten(1).sum(1).tolist() == [1] * 6


def test_self_challenge_mutes_nobody_when_no_sample_is_challenged():
    algo = RSC(TinyConv, task(), dict(RSC.defaults, batch_pct=0.0))
    b = batch(6, 0, 1)
    assert algo.self_challenge(algo.feature_map(b.x), b.y).eq(1).all()


def test_self_challenge_ranks_by_the_true_class_logit_gradient():
    algo = RSC(TinyConv, task(), dict(RSC.defaults, batch_pct=1.0))
    b = batch(4, 0, 1)
    z = algo.feature_map(b.x).detach().requires_grad_(True)
    algo.head(z).gather(1, b.y[:, None]).sum().backward()
    torch.manual_seed(0)
    mask = algo.self_challenge(algo.feature_map(b.x), b.y)
    expected = channel_mask(z.grad, 1 / 3) if mask.shape[1] > 1 else spatial_mask(z.grad, 1 / 3)
    assert torch.equal(mask.expand_as(expected), expected)


def test_irm_weight_adds_the_penalty_and_the_need_for_environments():
    assert RSC.needs({"irm_weight": 1.0}) == {"env"}
    assert RSC.needs({"irm_weight": 0.0}) == set()
    torch.manual_seed(0)
    algo = RSC(TinyConv, task(), dict(RSC.defaults, irm_weight=2.0))
    stats = algo.update([batch(8, 0, 1), batch(8, 1, 2)])
    assert "penalty" in stats


def test_rsc_plus_irm_is_cross_entropy_plus_the_irm_penalty_per_environment():
    """Seed 001 §4.5's IRM+RSC: the penalty ``irm`` uses, on the challenged logits, weighted by irm_weight.

    With batch_pct = 0 nothing is muted, so the challenged logits are the plain ones and the loss can be
    computed independently.
    """
    import torch.nn.functional as F

    from oodbench_methods.penalties import irm_penalty

    torch.manual_seed(0)
    algo = RSC(TinyConv, task(), dict(RSC.defaults, batch_pct=0.0, irm_weight=3.0))
    batches = [batch(8, 0, 1), batch(6, 1, 2)]
    logits = [algo.model(b.x) for b in batches]
    cross_entropy = F.cross_entropy(torch.cat(logits), torch.cat([b.y for b in batches]))
    penalty = sum(irm_penalty(z, b.y) for z, b in zip(logits, batches)) / 2
    stats = algo.update(batches)
    assert stats["penalty"] == pytest.approx(penalty.item(), rel=1e-5, abs=1e-8)
    assert stats["loss"] == pytest.approx(cross_entropy.item() + 3.0 * penalty.item(), rel=1e-5)


def test_rsc_accepts_the_lenet_backbone():
    from oodbench.api import Task
    from oodbench.builtin.lenet import LeNet

    rgb = Task("rgb", (3, 28, 28), 2, ("e0",), "color", ("red", "green"))
    algo = RSC(lambda: LeNet((3, 28, 28), 2), rgb, dict(RSC.defaults))
    assert algo.feature_map(torch.rand(2, 3, 28, 28)).shape == (2, 16, 5, 5)
