"""OOD metrics of one environment: accuracy, gap to the ceiling, worst- and average-group accuracy.

Accuracies are fractions in [0, 1]; ``gap`` is in percentage points, the
seed report's "distance to 75 %". Which way each is better lives in
``oodbench.directions``, which reports read without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import fmean

import torch


@dataclass(frozen=True)
class EnvMetrics:
    """Metrics of one evaluated split; ``group_acc`` holds only groups that have samples."""

    acc: float
    gap: float
    worst_group_acc: float
    avg_group_acc: float
    group_acc: dict[int, float]
    n: int
    ceiling: float

    def as_dict(self) -> dict:
        return asdict(self)


def gap_to_ceiling(acc: float, ceiling: float) -> float:
    """|acc - ceiling| in percentage points: above the ceiling is as suspicious as below it."""
    return abs(acc - ceiling) * 100.0


def group_accuracies(correct: torch.Tensor, group: torch.Tensor, num_groups: int) -> dict[int, float]:
    """Accuracy per group id, for the groups present in ``group``."""
    counts = torch.bincount(group, minlength=num_groups)
    hits = torch.bincount(group, weights=correct.double(), minlength=num_groups)
    return {g: hits[g].item() / counts[g].item() for g in range(len(counts)) if counts[g] > 0}


def env_metrics(
    predictions: torch.Tensor, y: torch.Tensor, group: torch.Tensor, num_groups: int, ceiling: float
) -> EnvMetrics:
    """All metrics of one split from predicted labels (not logits)."""
    if len(y) == 0:
        raise ValueError("cannot compute metrics of an empty split")
    correct = predictions == y
    acc = correct.double().mean().item()
    per_group = group_accuracies(correct, group, num_groups)
    return EnvMetrics(
        acc=acc,
        gap=gap_to_ceiling(acc, ceiling),
        worst_group_acc=min(per_group.values()),
        avg_group_acc=sum(per_group.values()) / len(per_group),
        group_acc=per_group,
        n=len(y),
        ceiling=ceiling,
    )


def mean_over_draws(draws: list[EnvMetrics]) -> EnvMetrics:
    """What one split scores on an average chip: each metric averaged over device draws of the same network.

    The worst group is each draw's own worst group, averaged (the expected
    worst group of one chip), not the worst of the averaged groups; ``gap``
    is the mean accuracy's gap, so the row stays consistent with its ``acc``.
    """
    if not draws:
        raise ValueError("no draws to average")
    acc = fmean([d.acc for d in draws])
    groups = sorted(draws[0].group_acc)
    return EnvMetrics(acc=acc, gap=gap_to_ceiling(acc, draws[0].ceiling),
                      worst_group_acc=fmean([d.worst_group_acc for d in draws]),
                      avg_group_acc=fmean([d.avg_group_acc for d in draws]),
                      group_acc={g: fmean([d.group_acc[g] for d in draws]) for g in groups},
                      n=draws[0].n, ceiling=draws[0].ceiling)
