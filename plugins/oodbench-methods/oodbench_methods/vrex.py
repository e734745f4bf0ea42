"""V-REx (Krueger et al.): equal risks across training environments.

Penalising the variance of the per-environment risks pushes the model off
features whose usefulness differs between environments (the color here).

The plug-in variance of minibatch risks is biased: it adds each risk's
sampling variance, about the spread of the per-sample losses over the batch
size, and lambda times that term rewards making every sample's loss alike,
which the constant predictor does best. ``penalty_estimate = "halves"``
multiplies two independent halves' deviations instead, an unbiased estimate
of the true risks' variance, as IRM's two-half penalty is of its own.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import Batch, pooled
from oodbench_methods.penalties import AnnealedPenalty, env_slices


def risk_variance(risks: torch.Tensor) -> torch.Tensor:
    """Population variance of the environments' risks (V-REx's penalty)."""
    return (risks - risks.mean()).pow(2).mean()


def split_risk_variance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """mean_e (R_e' - mean R')(R_e'' - mean R'') for risks of two disjoint halves: unbiased for the variance."""
    return ((first - first.mean()) * (second - second.mean())).mean()


def half_risks(logits: Sequence[torch.Tensor], batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each environment's risk on its even rows and on its odd rows."""
    halves = [[F.cross_entropy(z[part:2 * (len(b.y) // 2):2], b.y[part:2 * (len(b.y) // 2):2])
               for z, b in zip(logits, batches)] for part in (0, 1)]
    return torch.stack(halves[0]), torch.stack(halves[1])


class VREx(AnnealedPenalty):
    """Mean per-environment cross-entropy + lambda * their variance.

    Defaults for ColoredMNIST with the CNN: Adam at 1e-3; lambda = 1 for the
    first 280 steps (two epochs at batch 128 per environment), then 1e4 (the
    V-REx paper's ColoredMNIST value), Adam restarted at the jump. The
    ``grow`` schedule of ``irm`` is available too.
    """

    name = "vrex"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "penalty_weight": 1e4, "anneal_steps": 280, "schedule": "step",
                "penalty_estimate": "full"}
    requires = frozenset({"env"})

    def risk_and_penalty(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = env_slices(batches, self.model(pooled(batches).x))
        risks = torch.stack([F.cross_entropy(z, b.y) for z, b in zip(logits, batches)])
        if self.hparams["penalty_estimate"] == "halves":
            return risks.mean(), split_risk_variance(*half_risks(logits, batches))
        return risks.mean(), risk_variance(risks)


@hookimpl
def oodbench_register_algorithms(register):
    register(VREx)
