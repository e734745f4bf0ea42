"""VAE disentanglement then IRM fine-tuning (seed report 001 §5.2).

Stage 1 trains a VAE whose encoder splits an image into a *content* latent
(the digit's shape, meant to be the same in every environment) and a *style*
latent (its colors), with a classifier that sees only the content; stage 2
fine-tunes the content path with the IRMv1 penalty at a small learning rate,
to purge what style is left in the content. The deployable network is the
content path alone: encoder -> content mean -> classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, Bounded, IntRange, LogUniform, SingleModel, pooled
from oodbench_methods.penalties import ESTIMATES, PENALTY_WEIGHT, env_slices, irm_penalty


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) per sample, summed over the latent dimensions."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)


def sample(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """The reparameterised draw mean + sigma * eps, differentiable in both."""
    return mean + (0.5 * log_var).exp() * torch.randn_like(mean)


class ContentClassifier(nn.Module):
    """The deployable path: ``featurizer`` = encoder then content mean, ``classifier`` on it.

    Shaped like a backbone (``featurizer``, ``classifier``, ``n_features``),
    so targets and Grad-CAM treat it like one.
    """

    def __init__(self, encoder: nn.Module, content_mean: nn.Linear, classifier: nn.Linear) -> None:
        super().__init__()
        self.featurizer = nn.Sequential(encoder, content_mean)
        self.classifier = classifier
        self.n_features = content_mean.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


class VAEIRM(Algorithm):
    """Stage 1 (``vae_steps`` steps): reconstruction + kl_weight * KL + cls_weight * cross-entropy; then IRMv1.

    The encoder is the backbone's featurizer; linear heads give the content
    and style means and log-variances; an MLP decoder maps both latents back
    to the image (pixel-wise binary cross-entropy, images being in [0, 1]).
    Reconstruction and KL are per pixel (the ELBO divided by the pixel
    count), so the cross-entropy on a content sample weighs in. Stage 2 drops
    decoder and style: Adam at ``finetune_lr`` on the content path, loss =
    (mean per-environment risk + penalty_weight * mean IRMv1 penalty) /
    max(penalty_weight, 1), as ``irm`` scales it.
    """

    name = "vae_irm"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "content_dim": 16, "style_dim": 8, "kl_weight": 1.0,
                "cls_weight": 1.0, "vae_steps": 300, "finetune_lr": 1e-5, "penalty_weight": 100.0,
                "penalty_estimate": "halves"}
    # latent sizes shape the network (checked, not searched), as a backbone's widths
    search_space = {**SingleModel.search_space,
                    "content_dim": Bounded(1, 4096), "style_dim": Bounded(1, 4096),
                    "kl_weight": LogUniform(1e-1, 1e1, limits=(0.0, 1e4)),
                    "cls_weight": LogUniform(1e-1, 1e1, limits=(0.0, 1e4)),
                    "vae_steps": IntRange(100, 3000, log=True, limits=(0, 10 ** 7)),
                    "finetune_lr": LogUniform(1e-6, 1e-4, limits=(1e-8, 1.0)),
                    "penalty_weight": PENALTY_WEIGHT}
    requires = frozenset({"env"})

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["penalty_estimate"] not in ESTIMATES:
            raise ValueError(f"vae_irm: penalty_estimate {self.hparams['penalty_estimate']!r} not in {ESTIMATES}")
        backbone = backbone_factory()
        width, content, style = backbone.n_features, self.hparams["content_dim"], self.hparams["style_dim"]
        self.net = ContentClassifier(backbone.featurizer, nn.Linear(width, content), nn.Linear(content, task.num_classes))
        self.content_log_var = nn.Linear(width, content)
        self.style = nn.Linear(width, 2 * style)
        pixels = math.prod(task.input_shape)
        self.decoder = nn.Sequential(nn.Linear(content + style, 256), nn.ReLU(), nn.Linear(256, pixels), nn.Sigmoid(),
                                     nn.Unflatten(1, tuple(task.input_shape)))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams["lr"],
                                          weight_decay=self.hparams["weight_decay"])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def stage(self) -> int:
        """1 while the VAE trains, 2 once ``vae_steps`` steps are done."""
        return 1 if int(self.steps) < self.hparams["vae_steps"] else 2

    def vae_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage 1's objective on the pooled minibatch."""
        hidden = self.net.featurizer[0](batch.x)
        content_mean, content_log_var = self.net.featurizer[1](hidden), self.content_log_var(hidden)
        style_mean, style_log_var = self.style(hidden).chunk(2, dim=1)
        content = sample(content_mean, content_log_var)
        reconstruction = self.decoder(torch.cat([content, sample(style_mean, style_log_var)], dim=1))
        pixels = reconstruction[0].numel()
        recon = F.binary_cross_entropy(reconstruction, batch.x.clamp(0, 1))
        kl = (gaussian_kl(content_mean, content_log_var) + gaussian_kl(style_mean, style_log_var)).mean() / pixels
        cls = F.cross_entropy(self.net.classifier(content), batch.y)
        loss = recon + self.hparams["kl_weight"] * kl + self.hparams["cls_weight"] * cls
        return loss, {"reconstruction": recon.item(), "kl": kl.item(), "classification": cls.item()}

    def irm_loss(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage 2's objective: IRMv1 on the deployable network's logits, per environment."""
        logits = env_slices(batches, self.net(pooled(batches).x))
        risk = torch.stack([F.cross_entropy(z, b.y) for z, b in zip(logits, batches)]).mean()
        estimate = self.hparams["penalty_estimate"]
        penalty = torch.stack([irm_penalty(z, b.y, estimate) for z, b in zip(logits, batches)]).mean()
        weight = self.hparams["penalty_weight"]
        return (risk + weight * penalty) / max(weight, 1.0), {"risk": risk.item(), "penalty": penalty.item()}

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        if int(self.steps) == self.hparams["vae_steps"]:
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.hparams["finetune_lr"])
        stage = self.stage
        loss, stats = self.vae_loss(pooled(batches)) if stage == 1 else self.irm_loss(batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {"loss": loss.item(), "stage": float(stage), **stats}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def network(self) -> nn.Module:
        return self.net


@hookimpl
def oodbench_register_algorithms(register):
    register(VAEIRM)
