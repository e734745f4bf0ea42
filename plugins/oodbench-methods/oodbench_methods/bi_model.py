"""bi-model (seed report 000 §4.4): one network per attribute value, mixed by P(E) at test time.

Network v fits P(Y|X, E=v) on the training images whose attribute is v
(paired element by element with the other value's images, as the report
does); the prediction is sum_v P(E=v) P(Y|X, E=v), the backdoor formula.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, Environment, SingleModel, attribute_prior, pooled


class PriorMixture(nn.Module):
    """sum_v w_v softmax(net_v(x)), returned as log-probabilities so it is a drop-in logit module."""

    def __init__(self, members: list[nn.Module], weights: torch.Tensor) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", weights.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([F.log_softmax(m(x), dim=1) for m in self.members])
        return torch.logsumexp(log_probs + self.weights.log().view(-1, 1, 1), dim=0)


class BiModel(Algorithm):
    """A network per attribute value, each trained on its own value's images."""

    name = "bi_model"
    defaults = {"lr": 1e-3, "weight_decay": 0.0}
    search_space = {**SingleModel.search_space}
    requires = frozenset({"attribute"})

    def __init__(self, backbone_factory, task, hparams) -> None:
        super().__init__(backbone_factory, task, hparams)
        k = task.num_attributes
        self.mixture = PriorMixture([backbone_factory() for _ in range(k)], torch.full((k,), 1.0 / k))
        self.optimizer = torch.optim.Adam(self.mixture.parameters(), lr=self.hparams["lr"],
                                          weight_decay=self.hparams["weight_decay"])

    def setup(self, train: Sequence[Environment]) -> None:
        self.mixture.weights.copy_(attribute_prior(train, self.task.num_attributes).float())

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        batch = pooled(batches)
        members = [torch.nonzero(batch.attribute == v).squeeze(1) for v in range(self.task.num_attributes)]
        paired = min(len(m) for m in members)
        if paired == 0:
            return {}
        losses = [F.cross_entropy(net(batch.x[m[:paired]]), batch.y[m[:paired]])
                  for net, m in zip(self.mixture.members, members)]
        loss = sum(losses)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item() / len(losses), "paired": float(paired)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixture(x)

    def network(self) -> nn.Module:
        return self.mixture


@hookimpl
def oodbench_register_algorithms(register):
    register(BiModel)
