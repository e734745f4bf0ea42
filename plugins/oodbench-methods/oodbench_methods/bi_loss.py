"""bi-loss (seed report 000 §4.3): train one network on both colorings of every image.

Backdoor adjustment gives P(Y|do(X)) = sum_E P(Y|X,E) P(E). Each image is
shown in every attribute value (the dataset's declared channel swap makes the
counterfactual coloring), and the per-value losses are weighted by P(E),
measured on the training data in ``setup`` rather than assumed to be 1/2.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import Batch, Environment, SingleModel, attribute_prior, pooled


def versions_by_attribute(x: torch.Tensor, attribute: torch.Tensor, swapped: torch.Tensor) -> list[torch.Tensor]:
    """For a binary attribute: [every image rendered with value 0, every image rendered with value 1]."""
    is_zero = (attribute == 0).view(-1, *([1] * (x.dim() - 1)))
    return [torch.where(is_zero, x, swapped), torch.where(is_zero, swapped, x)]


class BiLoss(SingleModel):
    """Cross-entropy on each attribute rendering of the batch, weighted by the measured P(E)."""

    name = "bi_loss"
    defaults = {"lr": 1e-4, "weight_decay": 0.0}
    requires = frozenset({"attribute", "swap"})

    def __init__(self, backbone_factory, task, hparams) -> None:
        super().__init__(backbone_factory, task, hparams)
        if task.num_attributes != 2:
            raise ValueError(f"bi_loss needs a binary attribute; {task.dataset} has {task.num_attributes} values")
        self.register_buffer("prior", torch.full((2,), 0.5, dtype=torch.float64))

    def setup(self, train: Sequence[Environment]) -> None:
        self.prior.copy_(attribute_prior(train, 2))

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        renderings = versions_by_attribute(batch.x, batch.attribute, self.task.swap_attribute(batch.x))
        losses = [F.cross_entropy(self.model(x), batch.y) for x in renderings]
        loss = sum(w.float() * l for w, l in zip(self.prior, losses))
        return loss, {f"loss_{v}": l.item() for v, l in zip(self.task.attribute_values, losses)}


@hookimpl
def oodbench_register_algorithms(register):
    register(BiLoss)
