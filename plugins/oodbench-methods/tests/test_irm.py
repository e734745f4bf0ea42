"""IRMv1's penalty, the warm-up schedules and the Adam restart."""

import math

import pytest
import torch
import torch.nn.functional as F

from oodbench_methods.irm import IRM
from oodbench_methods.penalties import irm_penalty, penalty_weight
from toys import TinyConv, batch, task


def test_penalty_is_the_product_of_the_two_halves_analytic_gradients():
    # logits = W z for fixed z: rows [0, 1] (label 0) and [2, 0] (label 0).
    # d/dw CE(w * l, y) at w = 1 is sum_c (softmax(l)_c - [c == y]) * l_c:
    #   first:  p_1 * 1          = e / (1 + e)
    #   second: (p_0 - 1) * 2    = -2 / (1 + e^2)
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    y = torch.tensor([0, 0])
    e = math.e
    expected = (e / (1 + e)) * (-2 / (1 + e ** 2))
    assert irm_penalty(z @ W.T, y).item() == pytest.approx(expected, rel=1e-6)


def test_penalty_pairs_even_rows_with_odd_rows():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    y = torch.zeros(4, dtype=torch.long)
    e = math.e
    g_first, g_second = e / (1 + e), -2 / (1 + e ** 2)
    # even rows: [0, 1] and [2, 0]; odd rows the same: product of two equal means
    assert irm_penalty(logits, y).item() == pytest.approx(((g_first + g_second) / 2) ** 2, rel=1e-6)


def test_full_estimate_squares_the_whole_batch_gradient():
    # rows [0, 1] and [2, 0], both label 0: the batch gradient is the mean of the two rows' gradients
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    e = math.e
    mean_gradient = (e / (1 + e) - 2 / (1 + e ** 2)) / 2
    assert irm_penalty(logits, torch.zeros(2, dtype=torch.long), "full").item() == pytest.approx(
        mean_gradient ** 2, rel=1e-6)
    # the halves estimate of the same batch is the product, which here is negative
    assert irm_penalty(logits, torch.zeros(2, dtype=torch.long)).item() < 0


def test_unknown_penalty_estimate_is_refused():
    with pytest.raises(ValueError, match="penalty_estimate 'both' not in"):
        IRM(TinyConv, task(), {**IRM.defaults, "penalty_estimate": "both"})


def test_penalty_is_differentiable_in_the_logits():
    logits = torch.tensor([[0.5, -0.5], [1.0, 0.0]], requires_grad=True)
    irm_penalty(logits, torch.tensor([0, 1])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_schedules():
    assert [penalty_weight(s, 100.0, 3, "step") for s in (0, 2, 3, 10)] == [1.0, 1.0, 100.0, 100.0]
    assert penalty_weight(0, 100.0, 4, "grow") == 1.0
    assert penalty_weight(2, 100.0, 4, "grow") == pytest.approx(1 + 99 / 4)
    assert penalty_weight(9, 100.0, 4, "grow") == 100.0


def test_weight_jumps_after_warm_up_and_adam_restarts_there():
    torch.manual_seed(0)
    algo = IRM(TinyConv, task(), dict(IRM.defaults, anneal_steps=2, penalty_weight=50.0))
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    first = algo.optimizer
    weights = []
    for _ in range(2):
        weights.append(algo.update(batches)["penalty_weight"])
        assert algo.optimizer is first
    stats = algo.update(batches)
    assert algo.optimizer is not first
    assert weights + [stats["penalty_weight"]] == [1.0, 1.0, 50.0]
    assert stats["loss"] == pytest.approx((stats["risk"] + 50.0 * stats["penalty"]) / 50.0, rel=1e-5)
    assert int(algo.steps) == 3 and "steps" in algo.state_dict()


def test_risk_is_the_mean_of_the_environments_risks():
    torch.manual_seed(0)
    algo = IRM(TinyConv, task(), dict(IRM.defaults))
    batches = [batch(8, 0, 1), batch(6, 1, 2)]
    risk, penalty = algo.risk_and_penalty(batches)
    expected = [F.cross_entropy(algo.model(b.x), b.y) for b in batches]
    assert risk.item() == pytest.approx(sum(expected).item() / 2, rel=1e-5)
    assert penalty.item() == pytest.approx(
        sum(irm_penalty(algo.model(b.x), b.y) for b in batches).item() / 2, rel=1e-5)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        IRM(TinyConv, task(), dict(IRM.defaults, schedule="linear"))


def test_weight_decay_is_divided_by_lambda_like_the_risk():
    algo = IRM(TinyConv, task(), dict(IRM.defaults, anneal_steps=1, penalty_weight=100.0, weight_decay=0.5))
    batches = [batch(8, 0, 1), batch(8, 1, 2)]
    algo.update(batches)
    assert [g["weight_decay"] for g in algo.optimizer.param_groups] == [0.5]
    algo.update(batches)
    assert [g["weight_decay"] for g in algo.optimizer.param_groups] == [pytest.approx(0.005)]
