"""Empirical risk minimisation: the baseline every other method is measured against."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import Batch, SingleModel, pooled


class ERM(SingleModel):
    """Cross-entropy on the pooled minibatches of all training environments, with Adam."""

    name = "erm"
    defaults = {"lr": 1e-3, "weight_decay": 0.0}

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        return F.cross_entropy(self.model(batch.x), batch.y), {}


@hookimpl
def oodbench_register_algorithms(register):
    register(ERM)
