"""DANN (Ganin et al.; seed report 000 §9): features a domain classifier cannot tell apart.

Two forms, picked by ``domains``. ``source`` (default, the report's): the
label head learns the digit from the clean grayscale ``source`` domain; a
domain head behind a gradient-reversal layer tries to tell source features
from the colored training images' features, and the reversed gradient makes
the featurizer drop whatever gives the domain away: the color. ``envs``
(DomainBed's): no source domain; the label head learns from the training
environments' labelled images and the domain head tells the training
environments apart, so the featurizer drops whatever differs between them.

``domain_layer`` moves the reversal down the featurizer: the domain head then
sees the output of its first k modules, and where that is a feature map it
judges every location on its own, so a colored stroke must look like a gray
one already in the low-level filters. ``condition = "prediction"`` is CDAN's
multilinear conditioning (Long et al. 2018): the domain head sees the features
times the label head's own (detached) class probabilities, so each predicted
class is aligned on its own and no class can be matched to the other's; ``"label"`` uses the true labels instead,
the target's included (an ablation: the report's DANN never sees them).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, Bounded, IntRange, LogUniform, OneOf, SingleModel, pooled

SOURCE, TARGET = 0, 1
DOMAINS = ("source", "envs")
CONDITIONS = ("none", "prediction", "label")


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


def domain_head(shape: torch.Size, classes: int) -> nn.Module:
    """A one-hidden-layer classifier as wide as its input: an MLP on a vector, 1x1 convolutions on a feature map."""
    width = shape[0]
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes))
    return nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, classes, 1))


def domain_loss(logits: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the domain head, over the batch and, for a feature map, over its locations."""
    labels = torch.as_tensor(domain, device=logits.device).expand(logits.shape[0])
    if logits.dim() > 2:
        labels = labels.view(-1, *[1] * (logits.dim() - 2)).expand(logits.shape[0], *logits.shape[2:])
    return F.cross_entropy(logits, labels)


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
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "anneal_steps": 1400, "lambda_domain": 1.0, "domains": "source",
                "domain_layer": 0, "condition": "none"}
    # anneal_steps is not DomainBed's (its DANN has no schedule): searched over ~0.7 to ~70 epochs at batch 128
    search_space = {**SingleModel.search_space,
                    "anneal_steps": IntRange(100, 10_000, log=True, limits=(1, 10 ** 7)),
                    "lambda_domain": LogUniform(1e-2, 1e2, limits=(0.0, 1e4)),
                    "domains": OneOf(*DOMAINS), "condition": OneOf(*CONDITIONS), "domain_layer": Bounded(0, 1024)}
    requires = frozenset({"source"})

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        return frozenset({"env"} if hparams.get("domains") == "envs" else cls.requires)

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["domains"] not in DOMAINS:
            raise ValueError(f"dann: domains {self.hparams['domains']!r} not in {DOMAINS}")
        if self.hparams["condition"] not in CONDITIONS:
            raise ValueError(f"dann: condition {self.hparams['condition']!r} not in {CONDITIONS}")
        if self.hparams["domains"] == "envs" and task.num_envs < 2:
            raise ValueError(f"dann: domains='envs' needs at least two training environments; "
                             f"{task.dataset} has {task.num_envs}")
        self.model = backbone_factory()
        classes = task.num_envs if self.hparams["domains"] == "envs" else 2
        low, _ = self._split(self.model.featurizer, self.hparams["domain_layer"])
        with torch.no_grad():
            shape = low(torch.zeros(1, *task.input_shape)).shape[1:]
        if self.hparams["condition"] != "none":
            shape = torch.Size([shape[0] * task.num_classes, *shape[1:]])
        self.domain_head = domain_head(shape, classes)
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.domain_head.parameters()],
                                          lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _split(featurizer: nn.Module, layer: int) -> tuple[nn.Module, nn.Module]:
        """The featurizer's part before the reversal and the part after it (identity where the head sees the features)."""
        if layer == 0:
            return featurizer, nn.Identity()
        if not isinstance(featurizer, nn.Sequential) or not 0 < layer < len(featurizer):
            size = len(featurizer) if isinstance(featurizer, nn.Sequential) else None
            raise ValueError(f"dann: domain_layer {layer} needs a featurizer that is an nn.Sequential of more than "
                             f"{layer} modules" + (f"; this one has {size} (allowed 0..{size - 1})" if size else ""))
        return featurizer[:layer], featurizer[layer:]

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the domain head's input is made from and the label head's features."""
        below, above = self._split(self.model.featurizer, self.hparams["domain_layer"])
        low = below(x)
        return low, above(low)

    def _domain_logits(self, low: torch.Tensor, features: torch.Tensor, y: torch.Tensor,
                       alpha: float) -> torch.Tensor:
        """The domain head on the reversed features, times the class probabilities where conditioned."""
        reversed_low = reverse_gradient(low, alpha)
        if self.hparams["condition"] != "none":
            if self.hparams["condition"] == "label":
                probs = F.one_hot(y, self.task.num_classes).to(low.dtype)
            else:
                probs = F.softmax(self.model.classifier(features), dim=1).detach()
            probs = probs.view(*probs.shape, *[1] * (low.dim() - 1))
            reversed_low = (probs * reversed_low.unsqueeze(1)).flatten(1, 2)
        return self.domain_head(reversed_low)

    def source_losses(self, batches: Sequence[Batch], alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification on the source, domain loss of source vs the training environments' images."""
        if len(batches) <= self.task.num_envs:
            raise ValueError("dann: update got no source minibatch; the dataset must provide a 'source' environment "
                             "(or set domains='envs')")
        target, source = pooled(batches[:self.task.num_envs]), pooled(batches[self.task.num_envs:])
        low, features = self._features(torch.cat([source.x, target.x]))
        n_source = len(source.y)
        classification = F.cross_entropy(self.model.classifier(features[:n_source]), source.y)
        domain_logits = self._domain_logits(low, features, torch.cat([source.y, target.y]), alpha)
        domain = (domain_loss(domain_logits[:n_source], SOURCE) + domain_loss(domain_logits[n_source:], TARGET))
        return classification, domain

    def env_losses(self, batches: Sequence[Batch], alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification on the training environments, domain loss of telling them apart."""
        batch = pooled(batches[:self.task.num_envs])
        low, features = self._features(batch.x)
        classification = F.cross_entropy(self.model.classifier(features), batch.y)
        domain = domain_loss(self._domain_logits(low, features, batch.y, alpha), batch.env)
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
