"""Invariance penalties shared by several methods (no entry point of its own).

``irm_penalty`` is used by ``irm`` and, through ``irm_weight``, by ``rsc`` and
``rsc_plus``; ``AnnealedPenalty`` is the warm-up schedule ``irm`` and ``vrex`` share.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from oodbench.api import Batch, IntRange, LogUniform, OneOf, SingleModel

SCHEDULES = ("step", "grow")
ESTIMATES = ("halves", "full")

PENALTY_WEIGHT = LogUniform(1e-1, 1e5, limits=(0.0, 1e8))
"""Search space of an invariance penalty's lambda: DomainBed's 10^U(-1, 5) for IRM and V-REx."""
ANNEAL_STEPS = IntRange(1, 10_000, log=True, limits=(0, 10 ** 7))
"""Warm-up steps, DomainBed's 10^U(0, 4): up to ~70 epochs of ColoredMNIST at batch 128 per environment."""


def irm_penalty(logits: torch.Tensor, y: torch.Tensor, estimate: str = "halves") -> torch.Tensor:
    """IRMv1's squared gradient of the risk w.r.t. a dummy scale w = 1.0 on the logits.

    ``halves`` is unbiased (seed report 000 eq. 23): the gradient on the even
    rows times the gradient on the odd rows, so the noise of one minibatch does
    not square into the estimate; it can be negative on a single batch.
    ``full`` squares the gradient of the whole batch, as the IRM paper's own
    code does; with full-batch steps there is no minibatch noise to cancel and
    the penalty never rewards disagreement between the halves.
    """
    scale = torch.ones((), device=logits.device, requires_grad=True)
    if estimate == "full":
        grad = torch.autograd.grad(F.cross_entropy(logits * scale, y), scale, create_graph=True)[0]
        return grad.pow(2)
    half = len(y) // 2
    first = F.cross_entropy(logits[0:2 * half:2] * scale, y[0:2 * half:2])
    second = F.cross_entropy(logits[1:2 * half:2] * scale, y[1:2 * half:2])
    grad_first = torch.autograd.grad(first, scale, create_graph=True)[0]
    grad_second = torch.autograd.grad(second, scale, create_graph=True)[0]
    return grad_first * grad_second


def env_slices(batches: Sequence[Batch], pooled_rows: torch.Tensor) -> list[torch.Tensor]:
    """Rows of a pooled forward pass cut back into one tensor per environment's minibatch."""
    return list(pooled_rows.split([len(b.y) for b in batches]))


def penalty_weight(step: int, weight: float, anneal_steps: int, schedule: str) -> float:
    """lambda at ``step``: ``step`` holds 1 for ``anneal_steps`` steps, then jumps to ``weight``;
    ``grow`` rises quadratically from 1 to ``weight`` over ``anneal_steps`` steps, then stays.
    """
    if schedule == "step":
        return weight if step >= anneal_steps else 1.0
    progress = min(step / anneal_steps, 1.0) if anneal_steps > 0 else 1.0
    return 1.0 + (weight - 1.0) * progress ** 2


class AnnealedPenalty(SingleModel):
    """risk + lambda * penalty with lambda on a warm-up schedule, divided by max(lambda, 1).

    The warm-up lets plain ERM find useful features before the penalty can
    push towards the trivial invariant predictor. Dividing by lambda keeps the
    loss scale bounded as lambda grows, so Adam's running moments stay
    meaningful; at the ``step`` jump the balance of the two terms changes at
    once, so Adam is restarted with fresh moments there. Adam's
    ``weight_decay`` is an L2 term of the loss, so it is divided by the same
    max(lambda, 1), as the IRM paper's code divides its L2 term: left whole,
    it would outweigh the divided risk lambda-fold after the jump and shrink
    the network to a constant predictor. The step count is a
    buffer, so a checkpoint carries it.
    """

    search_space = {**SingleModel.search_space, "penalty_weight": PENALTY_WEIGHT, "anneal_steps": ANNEAL_STEPS,
                    "schedule": OneOf(*SCHEDULES), "penalty_estimate": OneOf(*ESTIMATES)}

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["schedule"] not in SCHEDULES:
            raise ValueError(f"{self.name}: schedule {self.hparams['schedule']!r} not in {SCHEDULES}")
        if self.hparams["penalty_estimate"] not in ESTIMATES:
            raise ValueError(f"{self.name}: penalty_estimate {self.hparams['penalty_estimate']!r} not in {ESTIMATES}")
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def risk_and_penalty(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean risk over the environments and the invariance penalty of this step."""
        raise NotImplementedError

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        step = int(self.steps)
        weight = penalty_weight(step, self.hparams["penalty_weight"], self.hparams["anneal_steps"],
                                self.hparams["schedule"])
        if self.hparams["schedule"] == "step" and step == self.hparams["anneal_steps"] and step > 0:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.hparams["lr"],
                                              weight_decay=self.hparams["weight_decay"])
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.hparams["weight_decay"] / max(weight, 1.0)
        self.steps += 1
        risk, penalty = self.risk_and_penalty(batches)
        loss = (risk + weight * penalty) / max(weight, 1.0)
        return loss, {"risk": risk.item(), "penalty": penalty.item(), "penalty_weight": weight}
