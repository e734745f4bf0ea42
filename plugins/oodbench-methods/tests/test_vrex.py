"""V-REx's penalty is the variance of the environments' risks."""

import pytest
import torch
import torch.nn.functional as F

from oodbench_methods.vrex import VREx, risk_variance, split_risk_variance
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


def test_split_estimate_multiplies_the_two_halves_deviations():
    first, second = torch.tensor([0.2, 0.6]), torch.tensor([0.3, 0.5])
    assert split_risk_variance(first, second).item() == pytest.approx(0.02)
    assert split_risk_variance(first, first).item() == pytest.approx(risk_variance(first).item())


def test_halves_objective_takes_even_and_odd_rows_of_each_environment():
    torch.manual_seed(0)
    algo = VREx(TinyConv, task(), dict(VREx.defaults, anneal_steps=0, penalty_weight=10.0, penalty_estimate="halves"))
    batches = [batch(8, 0, 1), batch(9, 1, 2)]  # an odd batch drops its last row from the halves
    even = torch.stack([F.cross_entropy(algo.model(b.x[0:8:2]), b.y[0:8:2]) for b in batches])
    odd = torch.stack([F.cross_entropy(algo.model(b.x[1:8:2]), b.y[1:8:2]) for b in batches])
    _, stats = algo.objective(batches)
    expected = ((even[0] - even[1]) * (odd[0] - odd[1]) / 4).item()
    assert stats["penalty"] == pytest.approx(expected, rel=1e-4, abs=1e-7)
    with pytest.raises(ValueError, match="penalty_estimate 'third' not in"):
        VREx(TinyConv, task(), dict(VREx.defaults, penalty_estimate="third"))


def test_plug_in_variance_is_biased_up_by_minibatch_noise_and_the_halves_are_not():
    """Two environments with the same true risk: the plug-in estimate averages well above 0, the split one near 0."""
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(2, 4000, generator=g) * 2  # per-sample losses, the same distribution in both environments
    full, halves = [], []
    for _ in range(2000):
        rows = torch.randint(4000, (2, 32), generator=g)
        sample = losses.gather(1, rows)
        full.append(risk_variance(sample.mean(1)))
        halves.append(split_risk_variance(sample[:, 0::2].mean(1), sample[:, 1::2].mean(1)))
    full, halves = torch.stack(full), torch.stack(halves)
    true_variance = ((losses[0].mean() - losses[1].mean()) / 2) ** 2
    noise = losses.var() / 32 / 2  # each risk's sampling variance, halved by the two-point population variance
    assert full.mean().item() == pytest.approx((true_variance + noise).item(), rel=0.15)
    assert abs(halves.mean() - true_variance).item() < 4 * halves.std().item() / len(halves) ** 0.5
