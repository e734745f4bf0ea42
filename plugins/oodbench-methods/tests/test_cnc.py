"""Correct-N-Contrast: hard positives and negatives, the contrastive loss, the stage-1 model."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oodbench.api import Environment, make_groups
from oodbench_methods.cnc import CNC, contrastive_loss, hard_pairs, pseudo_group_weights
from toys import TinyConv, batch, task


def test_hard_pairs_follow_the_stated_rule():
    y = torch.tensor([0, 0, 1, 1, 0])
    erm = torch.tensor([0, 1, 0, 1, 0])
    positives, negatives = hard_pairs(y, erm)
    # positive: same label, different ERM prediction; negative: different label, same prediction
    assert positives.nonzero().tolist() == [[0, 1], [1, 0], [1, 4], [2, 3], [3, 2], [4, 1]]
    assert negatives.nonzero().tolist() == [[0, 2], [1, 3], [2, 0], [2, 4], [3, 1], [4, 2]]
    assert not (positives & negatives).any() and not positives.diagonal().any()


def test_pseudo_groups_share_the_cross_entropy_equally():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    erm = torch.tensor([0, 0, 1, 1, 1, 1])
    weights = pseudo_group_weights(y, erm)
    # groups (0,0) x2, (0,1) x1, (1,1) x3: each present group holds a third of the weight
    assert weights.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 3, 1 / 9, 1 / 9, 1 / 9])
    assert weights.sum().item() == pytest.approx(1.0)


def test_contrastive_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    positives = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    negatives = torch.tensor([[False, False, True], [False, False, True], [False, False, False]])
    t = 0.5
    # anchor 0: positive 1 (similarity 0.6), negative 2 (0.0); anchor 1: positive 0 (0.6), negative 2 (0.8)
    a0 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0.0 / t)))
    a1 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0.8 / t)))
    assert contrastive_loss(z, positives, negatives, t).item() == pytest.approx((a0 + a1) / 2, rel=1e-6)
    assert contrastive_loss(z, positives, torch.zeros_like(negatives), t).item() == 0.0


def _env(n, seed):
    b = batch(n, 0, seed)
    return Environment("e0", "train", b.x, b.y, b.attribute, make_groups(b.y, b.attribute, 2))


def test_setup_trains_the_stage_one_model_then_freezes_it():
    torch.manual_seed(0)
    algo = CNC(TinyConv, task(), dict(CNC.defaults, erm_batch_size=4, erm_epochs=2))
    before = [p.clone() for p in algo.erm.parameters()]
    algo.setup([_env(8, 1), _env(8, 2)])
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.erm.parameters()))
    assert not any(p.requires_grad for p in algo.erm.parameters())
    algo.train()
    assert algo.model.training and not algo.erm.training
    frozen = [p.clone() for p in algo.erm.parameters()]
    algo.update([batch(8, 0, 3), batch(8, 1, 4)])
    assert all(torch.equal(f, p) for f, p in zip(frozen, algo.erm.parameters()))


class FirstPixel(nn.Module):
    """A stand-in stage-1 model whose prediction is whether the first pixel is above 0.5."""

    def forward(self, x):
        return torch.stack([0.5 - x[:, 0, 0, 0], x[:, 0, 0, 0] - 0.5], dim=1)


def test_objective_mixes_contrast_and_cross_entropy_on_erm_pseudo_groups():
    torch.manual_seed(0)
    algo = CNC(TinyConv, task(), dict(CNC.defaults, contrast_weight=0.25))
    algo.erm = FirstPixel()
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    x = torch.cat([b.x for b in batches])
    y = torch.cat([b.y for b in batches])
    erm_prediction = (x[:, 0, 0, 0] > 0.5).long()
    positives, negatives = hard_pairs(y, erm_prediction)
    assert positives.any() and negatives.any()
    features = algo.model.featurizer(x)
    contrast = contrastive_loss(F.normalize(features, dim=1), positives, negatives, 0.1)
    per_sample = F.cross_entropy(algo.model.classifier(features), y, reduction="none")
    balanced = (per_sample * pseudo_group_weights(y, erm_prediction)).sum()
    loss, stats = algo.objective(batches)
    assert loss.item() == pytest.approx((0.25 * contrast + 0.75 * balanced).item(), rel=1e-5)
    assert stats["contrast"] > 0
    algo.hparams["balanced_cross_entropy"] = False
    loss, _ = algo.objective(batches)
    assert loss.item() == pytest.approx((0.25 * contrast + 0.75 * per_sample.mean()).item(), rel=1e-5)
