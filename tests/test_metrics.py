"""Metric functions on hand-computed cases."""

import pytest
import torch

from oodbench.metrics import env_metrics, gap_to_ceiling, group_accuracies


def test_gap_is_absolute_distance_in_points():
    assert gap_to_ceiling(0.354, 0.75) == pytest.approx(39.6)
    assert gap_to_ceiling(0.80, 0.75) == pytest.approx(5.0)
    assert gap_to_ceiling(0.75, 0.75) == 0.0


def test_group_accuracies_only_for_present_groups():
    correct = torch.tensor([True, False, True, True, False])
    group = torch.tensor([0, 0, 1, 3, 3])
    assert group_accuracies(correct, group, num_groups=4) == {0: 0.5, 1: 1.0, 3: 0.5}


def test_env_metrics_hand_computed():
    # groups: 0 -> 3 samples (2 right), 1 -> 1 sample (1 right), 2 -> 4 samples (1 right)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    group = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    predictions = torch.tensor([0, 0, 1, 0, 1, 0, 0, 0])
    m = env_metrics(predictions, y, group, num_groups=4, ceiling=0.75)
    assert m.acc == pytest.approx(4 / 8)
    assert m.gap == pytest.approx(25.0)
    assert m.group_acc == pytest.approx({0: 2 / 3, 1: 1.0, 2: 1 / 4})
    assert m.worst_group_acc == pytest.approx(0.25)
    assert m.avg_group_acc == pytest.approx((2 / 3 + 1.0 + 0.25) / 3)
    assert m.n == 8


def test_worst_group_reveals_a_spurious_classifier():
    # a classifier that predicts the color: perfect on aligned groups, zero on conflicting ones
    y = torch.tensor([0, 0, 1, 1])
    color = torch.tensor([0, 1, 1, 0])
    group = y * 2 + color
    m = env_metrics(color, y, group, num_groups=4, ceiling=1.0)
    assert m.acc == 0.5 and m.worst_group_acc == 0.0 and m.avg_group_acc == 0.5


def test_empty_split_is_an_error():
    empty = torch.tensor([], dtype=torch.long)
    with pytest.raises(ValueError):
        env_metrics(empty, empty, empty, 4, 0.75)
