"""adjust (seed report 000 §4.5): change the training distribution, then train plainly.

ERM fits P(Y|X) = sum_E P(Y|X,E) P(E|X); it equals the backdoor target
sum_E P(Y|X,E) P(E) once P(E|X) = P(E). Two ways to get there:

- ``mode = "counterfactual"``: every image appears in every attribute
  rendering (the dataset's declared swap), so E carries no information about X;
- ``mode = "balance"`` (default, the variant behind the report's Table 5):
  label-balanced resampling, every (label, attribute) group drawn equally
  often by repetition, no recoloring.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import Batch, Environment, SingleModel, pooled

MODES = ("counterfactual", "balance")


def balanced_indices(groups: list[torch.Tensor], total: int, generator: torch.Generator) -> torch.Tensor:
    """``total // len(groups)`` draws with replacement from each group's index list: equal cell counts."""
    per_group = total // len(groups)
    return torch.cat([g[torch.randint(len(g), (per_group,), generator=generator)] for g in groups])


class Adjust(SingleModel):
    """ERM on a training distribution adjusted so that the attribute says nothing about the image."""

    name = "adjust"
    defaults = {"lr": 1e-4, "weight_decay": 0.0, "mode": "balance"}
    requires = frozenset({"group"})

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        return frozenset({"attribute", "swap"} if hparams.get("mode") == "counterfactual" else {"group"})

    def __init__(self, backbone_factory, task, hparams) -> None:
        super().__init__(backbone_factory, task, hparams)
        if self.hparams["mode"] not in MODES:
            raise ValueError(f"adjust: mode {self.hparams['mode']!r} not in {MODES}")
        self.pool: Environment | None = None
        self.groups: list[torch.Tensor] = []
        self.generator = torch.Generator()

    def setup(self, train: Sequence[Environment]) -> None:
        if self.hparams["mode"] != "balance":
            return
        self.pool = Environment("pool", "train", *(torch.cat([getattr(e, p) for e in train])
                                                   for p in ("x", "y", "attribute", "group")))
        present = [torch.nonzero(self.pool.group == g).squeeze(1) for g in range(self.task.num_groups)]
        self.groups = [g for g in present if len(g)]
        self.generator.manual_seed(int(torch.randint(2**31, (1,)).item()))

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        if self.hparams["mode"] == "counterfactual":
            x = torch.cat([batch.x, self.task.swap_attribute(batch.x)])
            y = torch.cat([batch.y, batch.y])
        else:
            index = balanced_indices(self.groups, len(batch.y), self.generator).to(self.pool.x.device)
            x, y = self.pool.x[index], self.pool.y[index]
        return F.cross_entropy(self.model(x), y), {}


@hookimpl
def oodbench_register_algorithms(register):
    register(Adjust)
