"""GroupDRO (Sagawa et al.; seed report 000 §8): minimise the worst (label x attribute) group's loss.

The worst case over groups is approached by exponentiated-gradient weights q
over the groups: a group whose loss stays high gains weight, so the model
cannot trade a minority group (a green 0, a red 1) for the majority.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import Batch, LogUniform, SingleModel, pooled

MODES = ("batch", "online")


def group_losses(losses: torch.Tensor, group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of each group (0 where absent) and which groups are present in the batch."""
    counts = torch.bincount(group, minlength=num_groups)
    sums = losses.new_zeros(num_groups).index_add(0, group, losses)
    return sums / counts.clamp(min=1), counts > 0


def exponentiated_step(q: torch.Tensor, losses: torch.Tensor, present: torch.Tensor, eta: float) -> torch.Tensor:
    """q_g * exp(eta * loss_g) for the present groups, renormalised: weight flows to the worse groups."""
    q = q * torch.where(present, torch.exp(eta * losses), torch.ones_like(losses))
    return q / q.sum()


class GroupDRO(SingleModel):
    """sum_g q_g * loss_g over the groups present, q updated before each step.

    Defaults for ColoredMNIST with the CNN: Adam at 1e-3, eta = 0.01 (Sagawa
    et al.'s step size), no L2. ``mode = "online"`` is the report's
    Algorithm 1: single-sample steps, each drawing a group uniformly among
    those in the minibatch and one of its samples, as many steps per
    ``update`` as the minibatch has samples; q_i grows by exp(eta * loss),
    the learning rate of that step is ``lr * q_i``, and ``weight_decay`` is
    added to the loss as weight_decay * sum(p^2), so it enters q's update as
    it does there (the report: eta = 0.001, weight_decay = 0.001). In batch
    mode ``weight_decay`` is Adam's.
    """

    name = "group_dro"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "eta": 0.01, "mode": "batch"}
    search_space = {**SingleModel.search_space, "eta": LogUniform(1e-3, 1e-1, limits=(0.0, 1.0))}
    requires = frozenset({"group"})

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["mode"] not in MODES:
            raise ValueError(f"group_dro: mode {self.hparams['mode']!r} not in {MODES}")
        if self.hparams["mode"] == "online":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.hparams["lr"])
        self.register_buffer("q", torch.full((task.num_groups,), 1.0 / task.num_groups))

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        losses, present = group_losses(F.cross_entropy(self.model(batch.x), batch.y, reduction="none"),
                                       batch.group, self.task.num_groups)
        self.q.copy_(exponentiated_step(self.q, losses.detach(), present, self.hparams["eta"]))
        loss = (self.q * losses)[present].sum()
        return loss, {"worst_group_loss": losses[present].max().item(), "q_max": self.q.max().item()}

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        if self.hparams["mode"] == "batch":
            return super().update(batches)
        return self.online_update(pooled(batches))

    def online_update(self, batch: Batch) -> dict[str, float]:
        """The report's Algorithm 1 over this minibatch: one sample, one q update, one scaled step at a time."""
        present = torch.unique(batch.group)
        members = {int(g): torch.nonzero(batch.group == g).squeeze(1) for g in present}
        picks = present[torch.randint(len(present), (len(batch.y),))].tolist()
        total = 0.0
        for g in picks:
            i = members[g][torch.randint(len(members[g]), (1,))]
            loss = F.cross_entropy(self.model(batch.x[i]), batch.y[i])
            loss = loss + self.hparams["weight_decay"] * sum(p.pow(2).sum() for p in self.model.parameters())
            self.q[g] *= torch.exp(self.hparams["eta"] * loss.detach())
            self.q /= self.q.sum()
            for param_group in self.optimizer.param_groups:
                param_group["lr"] = self.hparams["lr"] * self.q[g].item()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        return {"loss": total / len(picks), "q_max": self.q.max().item()}


@hookimpl
def oodbench_register_algorithms(register):
    register(GroupDRO)
