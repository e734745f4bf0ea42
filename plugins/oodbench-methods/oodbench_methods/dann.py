"""DANN (Ganin et al.; seed report 000 §9): features a domain classifier cannot tell apart.

The label head learns the digit from the clean grayscale ``source`` domain;
a domain head behind a gradient-reversal layer tries to tell source features
from the colored training images' features, and the reversed gradient makes
the featurizer drop whatever gives the domain away: the color.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, pooled

SOURCE, TARGET = 0, 1


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward, gradient times -alpha on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def reverse_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``x`` unchanged, but training whatever produced it to maximise the loss downstream, scaled by alpha."""
    return GradientReversal.apply(x, alpha)


def reversal_strength(progress: float) -> float:
    """alpha = 2 / (1 + exp(-10 p)) - 1: 0 at the start, so the domain head learns first, near 1 by p = 0.5."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class DANN(Algorithm):
    """Source cross-entropy + source and target domain cross-entropies (report eq. 19).

    Target = the training environments' images, their labels unused; source =
    the dataset's ``source`` environments. Training progress p for the
    reversal schedule is ``steps / anneal_steps`` (capped at 1), since an
    algorithm does not know the run's total steps; the default 1400 is ten
    epochs of ColoredMNIST at batch 128 per environment. Other defaults: Adam
    at 1e-3 (the report's), a one-hidden-layer domain head as wide as the
    features.
    """

    name = "dann"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "anneal_steps": 1400}
    requires = frozenset({"source"})

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        self.model = backbone_factory()
        width = self.model.n_features
        self.domain_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.domain_head.parameters()],
                                          lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        if len(batches) <= self.task.num_envs:
            raise ValueError("dann: update got no source minibatch; the dataset must provide a 'source' environment")
        target, source = pooled(batches[:self.task.num_envs]), pooled(batches[self.task.num_envs:])
        alpha = reversal_strength(min(int(self.steps) / self.hparams["anneal_steps"], 1.0))
        features = self.model.featurizer(torch.cat([source.x, target.x]))
        n_source = len(source.y)
        classification = F.cross_entropy(self.model.classifier(features[:n_source]), source.y)
        domain_logits = self.domain_head(reverse_gradient(features, alpha))
        domain_source = F.cross_entropy(domain_logits[:n_source], torch.full_like(source.y, SOURCE))
        domain_target = F.cross_entropy(domain_logits[n_source:], torch.full_like(target.y, TARGET))
        loss = classification + domain_source + domain_target
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {"loss": loss.item(), "classification": classification.item(),
                "domain": (domain_source + domain_target).item(), "alpha": alpha}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def network(self) -> nn.Module:
        return self.model


@hookimpl
def oodbench_register_algorithms(register):
    register(DANN)
