"""Empirical risk minimisation: the baseline every other method is measured against."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, BackboneFactory, Batch, Task


class ERM(Algorithm):
    """Cross-entropy on the pooled minibatches of all training environments, with Adam."""

    name = "erm"
    defaults = {"lr": 1e-3, "weight_decay": 0.0}

    def __init__(self, backbone_factory: BackboneFactory, task: Task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        self.model = backbone_factory()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        x = torch.cat([b.x for b in batches])
        y = torch.cat([b.y for b in batches])
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def network(self) -> nn.Module:
        return self.model


@hookimpl
def oodbench_register_algorithms(register):
    register(ERM)
