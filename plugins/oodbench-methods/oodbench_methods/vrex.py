"""V-REx (Krueger et al.): equal risks across training environments.

Penalising the variance of the per-environment risks pushes the model off
features whose usefulness differs between environments (the color here).
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


class VREx(AnnealedPenalty):
    """Mean per-environment cross-entropy + lambda * their variance.

    Defaults for ColoredMNIST with the CNN: Adam at 1e-3; lambda = 1 for the
    first 280 steps (two epochs at batch 128 per environment), then 1e4 (the
    V-REx paper's ColoredMNIST value), Adam restarted at the jump. The
    ``grow`` schedule of ``irm`` is available too.
    """

    name = "vrex"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "penalty_weight": 1e4, "anneal_steps": 280, "schedule": "step"}
    requires = frozenset({"env"})

    def risk_and_penalty(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = env_slices(batches, self.model(pooled(batches).x))
        risks = torch.stack([F.cross_entropy(z, b.y) for z, b in zip(logits, batches)])
        return risks.mean(), risk_variance(risks)


@hookimpl
def oodbench_register_algorithms(register):
    register(VREx)
