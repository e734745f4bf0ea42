"""DANN's gradient reversal, its schedule, and which data each loss sees."""

import math

import pytest
import torch

from oodbench.api import Batch
from oodbench_methods.dann import DANN, reversal_strength, reverse_gradient
from toys import TinyConv, batch, task


def test_gradient_reversal_is_identity_forward_and_scaled_negation_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = reverse_gradient(x, 0.3)
    assert torch.equal(out, x)
    (out * torch.tensor([1.0, 2.0, 4.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.3, -0.6, -1.2]))


def test_reversal_strength_schedule():
    assert reversal_strength(0.0) == 0.0
    assert reversal_strength(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.9999 < reversal_strength(1.0) < 1.0


def _algo():
    torch.manual_seed(0)
    return DANN(TinyConv, task(sources=("source",)), dict(DANN.defaults, anneal_steps=4))


def _batches(target_labels_flipped=False):
    train = [batch(8, 0, 1), batch(8, 1, 2)]
    if target_labels_flipped:
        train = [Batch(b.x, 1 - b.y, b.env, b.group, b.attribute) for b in train]
    return [*train, batch(8, 2, 3)]


def test_target_labels_are_never_used():
    plain, flipped = _algo(), _algo()
    assert plain.update(_batches()) == flipped.update(_batches(target_labels_flipped=True))
    for a, b in zip(plain.parameters(), flipped.parameters()):
        assert torch.equal(a, b)


def test_source_labels_drive_the_classification_loss():
    algo = _algo()
    source = _batches()[2]
    expected = torch.nn.functional.cross_entropy(algo.model(source.x), source.y).item()
    assert algo.update(_batches())["classification"] == pytest.approx(expected, rel=1e-5)


def test_alpha_follows_progress_and_the_step_count_is_checkpointed():
    algo = _algo()
    alphas = [algo.update(_batches())["alpha"] for _ in range(6)]
    assert alphas == pytest.approx([reversal_strength(min(s / 4, 1.0)) for s in range(6)])
    assert int(algo.state_dict()["steps"]) == 6


def test_missing_source_is_a_clear_error():
    with pytest.raises(ValueError, match="source"):
        _algo().update(_batches()[:2])
