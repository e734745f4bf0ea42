"""RSC, Representation Self-Challenging (Huang et al.; seed report 001 §4.1).

Each step finds the parts of the conv feature map the true-class logit
depends on most, mutes them, and trains on what is left, so the network
cannot rest on one dominant cue (the color, on ColoredMNIST) and has to find
others. ``irm_weight`` > 0 adds the IRMv1 penalty on top (report 001 §4.5's
IRM+RSC).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Batch, Bounded, SingleModel, Uniform, pooled
from oodbench_methods.penalties import env_slices, irm_penalty


def flatten_index(backbone: nn.Module, method: str) -> int:
    """Position of the featurizer's ``nn.Flatten``: the layers before it produce the conv feature map.

    A backbone without conv layers before a Flatten has no channels or
    positions to mute, so the method declines it by name.
    """
    featurizer = getattr(backbone, "featurizer", None)
    if isinstance(featurizer, nn.Sequential):
        flatten = [i for i, layer in enumerate(featurizer) if isinstance(layer, nn.Flatten)]
        if flatten and flatten[0] > 0:
            return flatten[0]
    name = getattr(backbone, "name", type(backbone).__name__)
    raise ValueError(f"{method} needs a conv feature map: a featurizer that is an nn.Sequential with layers "
                     f"before an nn.Flatten; backbone {name} has none")


def count(fraction: float, n: int) -> int:
    """How many of ``n`` items ``fraction`` selects (rounded down; float noise such as 0.29 * 100 forgiven)."""
    return int(round(fraction * n, 6))


def mute_top(importance: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask of [B, N] importances: 0 at each row's ``count(fraction, N)`` largest entries, 1 elsewhere."""
    mask = torch.ones_like(importance)
    k = count(fraction, importance.shape[1])
    if k:
        mask.scatter_(1, importance.topk(k, dim=1).indices, 0.0)
    return mask


def channel_mask(grad: torch.Tensor, fraction: float) -> torch.Tensor:
    """[B, C, 1, 1]: mutes the channels with the largest mean |gradient| over positions (report 001 eq. 2)."""
    return mute_top(grad.abs().mean((2, 3)), fraction)[:, :, None, None]


def spatial_mask(grad: torch.Tensor, fraction: float) -> torch.Tensor:
    """[B, 1, H, W]: mutes the positions with the largest mean |gradient| over channels (report 001 eq. 3)."""
    b, _, h, w = grad.shape
    return mute_top(grad.abs().mean(1).flatten(1), fraction).view(b, 1, h, w)


def most_challenged(drop: torch.Tensor, fraction: float) -> torch.Tensor:
    """True for the ``count(fraction, B)`` samples whose true-class confidence fell most under the mask.

    The confidence-guided correction: a mask that barely changed a sample's
    prediction muted nothing it relied on, so that sample trains unmuted.
    """
    chosen = torch.zeros_like(drop, dtype=torch.bool)
    k = count(fraction, len(drop))
    if k:
        chosen[drop.topk(k).indices] = True
    return chosen


class RSC(SingleModel):
    """Cross-entropy on the self-challenged feature map (+ irm_weight * IRMv1 penalty per environment).

    Each step mutes, per sample, the top ``drop_pct`` channels or spatial
    positions (chosen at random per batch) by the gradient of the true-class
    logit, then keeps that mask only for the ``batch_pct`` of samples whose
    confidence dropped most. Defaults (the RSC paper's, fine for ColoredMNIST
    with the CNN): drop_pct = batch_pct = 1/3, Adam at 1e-3, irm_weight 0.
    The backbone must have a conv feature map before its Flatten (``cnn``
    has; ``mlp`` is declined).
    """

    name = "rsc"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "drop_pct": 1 / 3, "batch_pct": 1 / 3, "irm_weight": 0.0}
    # irm_weight is checked, not searched: > 0 makes the method RSC + IRM, which needs env
    search_space = {**SingleModel.search_space,
                    "drop_pct": Uniform(0.0, 0.5, limits=(0.0, 1.0)),
                    "batch_pct": Uniform(0.0, 0.5, limits=(0.0, 1.0)),
                    "irm_weight": Bounded(0.0, 1e8)}
    requires = frozenset()

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        return frozenset({"env"}) if hparams.get("irm_weight", 0.0) > 0 else frozenset(cls.requires)

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        self.flatten_at = flatten_index(self.model, self.name)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.featurizer[:self.flatten_at](x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(self.model.featurizer[self.flatten_at:](z))

    def challenge_mask(self, grad: torch.Tensor) -> torch.Tensor:
        """Channel or spatial muting, with equal chance, as the RSC paper."""
        if torch.rand(()) < 0.5:
            return channel_mask(grad, self.hparams["drop_pct"])
        return spatial_mask(grad, self.hparams["drop_pct"])

    def self_challenge(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The corrected mask for feature map ``z``: computed on a detached copy, so it adds no gradient itself."""
        probe = z.detach().requires_grad_(True)
        logits = self.head(probe)
        grad = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), probe)[0]
        with torch.no_grad():
            mask = self.challenge_mask(grad)
            before = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
            after = self.head(probe * mask).softmax(1).gather(1, y[:, None]).squeeze(1)
            keep = most_challenged(before - after, self.hparams["batch_pct"])
            return torch.where(keep[:, None, None, None], mask, torch.ones_like(mask))

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        z = self.feature_map(batch.x)
        mask = self.self_challenge(z, batch.y)
        logits = self.head(z * mask)
        loss = F.cross_entropy(logits, batch.y)
        stats = {"muted": (mask < 1).float().mean().item()}
        if self.hparams["irm_weight"] > 0:
            per_env = env_slices(batches, logits)
            penalty = torch.stack([irm_penalty(z_e, b.y) for z_e, b in zip(per_env, batches)]).mean()
            loss = loss + self.hparams["irm_weight"] * penalty
            stats["penalty"] = penalty.item()
        return loss, stats


@hookimpl
def oodbench_register_algorithms(register):
    register(RSC)
