"""V-REx's penalty is the variance of the environments' risks."""

import pytest
import torch
import torch.nn.functional as F

from oodbench_methods.vrex import VREx, risk_variance
from toys import TinyConv, batch, task


def test_penalty_is_the_population_variance_of_given_risks():
    assert risk_variance(torch.tensor([0.2, 0.6])).item() == pytest.approx(0.04)
    assert risk_variance(torch.tensor([1.0, 2.0, 3.0, 6.0])).item() == pytest.approx(3.5)
    assert risk_variance(torch.tensor([0.5, 0.5])).item() == 0.0


def test_objective_penalises_the_spread_of_per_environment_risks():
    torch.manual_seed(0)
    algo = VREx(TinyConv, task(), dict(VREx.defaults, anneal_steps=0, penalty_weight=10.0))
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    risks = torch.stack([F.cross_entropy(algo.model(b.x), b.y) for b in batches])
    loss, stats = algo.objective(batches)
    assert stats["penalty"] == pytest.approx(((risks[0] - risks[1]) / 2).pow(2).item(), rel=1e-5)
    assert stats["risk"] == pytest.approx(risks.mean().item(), rel=1e-5)
    assert loss.item() == pytest.approx((stats["risk"] + 10.0 * stats["penalty"]) / 10.0, rel=1e-5)
