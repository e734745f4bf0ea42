"""DANN (Ganin et al.; seed report 000 §9): features a domain classifier cannot tell apart.

Two forms, picked by ``domains``. ``source`` (default, the report's): the
label head learns the digit from the clean grayscale ``source`` domain; a
domain head behind a gradient-reversal layer tries to tell source features
from the colored training images' features, and the reversed gradient makes
the featurizer drop whatever gives the domain away: the color. ``envs``
(DomainBed's): no source domain; the label head learns from the training
environments' labelled images and the domain head tells the training
environments apart, so the featurizer drops whatever differs between them.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, IntRange, LogUniform, SingleModel, pooled

SOURCE, TARGET = 0, 1
DOMAINS = ("source", "envs")


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
    """Label cross-entropy + lambda_domain * domain cross-entropy behind gradient reversal.

    ``domains = "source"`` (report eq. 19): the labels are the ``source``
    environments'; the domain head tells source (class 0) from the training
    environments' images (class 1, their labels unused); the domain loss is
    the sum of the two domains' mean cross-entropies. ``domains = "envs"``
    (DomainBed's DANN): the labels are the training environments', the domain
    head has one class per training environment, the domain loss is its mean
    cross-entropy over the pooled batch. Training progress p for the reversal
    schedule is ``steps / anneal_steps`` (capped at 1), since an algorithm does
    not know the run's total steps; the default 1400 is ten epochs of
    ColoredMNIST at batch 128 per environment. Other defaults: Adam at 1e-3
    (the report's), a one-hidden-layer domain head as wide as the features.
    """

    name = "dann"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "anneal_steps": 1400, "lambda_domain": 1.0, "domains": "source"}
    # anneal_steps is not DomainBed's (its DANN has no schedule): searched over ~0.7 to ~70 epochs at batch 128
    search_space = {**SingleModel.search_space,
                    "anneal_steps": IntRange(100, 10_000, log=True, limits=(1, 10 ** 7)),
                    "lambda_domain": LogUniform(1e-2, 1e2, limits=(0.0, 1e4))}
    requires = frozenset({"source"})

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        return frozenset({"env"} if hparams.get("domains") == "envs" else cls.requires)

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["domains"] not in DOMAINS:
            raise ValueError(f"dann: domains {self.hparams['domains']!r} not in {DOMAINS}")
        if self.hparams["domains"] == "envs" and task.num_envs < 2:
            raise ValueError(f"dann: domains='envs' needs at least two training environments; "
                             f"{task.dataset} has {task.num_envs}")
        self.model = backbone_factory()
        width = self.model.n_features
        classes = task.num_envs if self.hparams["domains"] == "envs" else 2
        self.domain_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes))
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.domain_head.parameters()],
                                          lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def source_losses(self, batches: Sequence[Batch], alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification on the source, domain loss of source vs the training environments' images."""
        if len(batches) <= self.task.num_envs:
            raise ValueError("dann: update got no source minibatch; the dataset must provide a 'source' environment "
                             "(or set domains='envs')")
        target, source = pooled(batches[:self.task.num_envs]), pooled(batches[self.task.num_envs:])
        features = self.model.featurizer(torch.cat([source.x, target.x]))
        n_source = len(source.y)
        classification = F.cross_entropy(self.model.classifier(features[:n_source]), source.y)
        domain_logits = self.domain_head(reverse_gradient(features, alpha))
        domain = (F.cross_entropy(domain_logits[:n_source], torch.full_like(source.y, SOURCE))
                  + F.cross_entropy(domain_logits[n_source:], torch.full_like(target.y, TARGET)))
        return classification, domain

    def env_losses(self, batches: Sequence[Batch], alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification on the training environments, domain loss of telling them apart."""
        batch = pooled(batches[:self.task.num_envs])
        features = self.model.featurizer(batch.x)
        classification = F.cross_entropy(self.model.classifier(features), batch.y)
        domain = F.cross_entropy(self.domain_head(reverse_gradient(features, alpha)), batch.env)
        return classification, domain

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        alpha = reversal_strength(min(int(self.steps) / self.hparams["anneal_steps"], 1.0))
        losses = self.env_losses if self.hparams["domains"] == "envs" else self.source_losses
        classification, domain = losses(batches, alpha)
        loss = classification + self.hparams["lambda_domain"] * domain
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {"loss": loss.item(), "classification": classification.item(), "domain": domain.item(),
                "alpha": alpha}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def network(self) -> nn.Module:
        return self.model


@hookimpl
def oodbench_register_algorithms(register):
    register(DANN)
