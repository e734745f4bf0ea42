"""bi-model (seed report 000 §4.4): one network per attribute value, mixed by P(E) at test time.

Network v fits P(Y|X, E=v) on the training images whose attribute is v
(paired element by element with the other value's images, as the report
does); the prediction is sum_v P(E=v) P(Y|X, E=v), the backdoor formula.

The report asks every network about the test image as it is, so the network
of the other color answers about images it never saw, and that answer is
whatever its training left it with. ``counterfactual = true`` asks each
network about the image drawn in its own attribute value instead (the
dataset's channel swap), which is what P(Y | X = this digit, E = v) means;
a small router, trained on the attribute labels, tells which of the image and
its swap is drawn in which value.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Algorithm, Batch, Environment, SingleModel, attribute_prior, pooled


class AttributeRouter(nn.Module):
    """P(attribute | x) from each channel's mean and maximum: the channel swap moves exactly these."""

    def __init__(self, channels: int, values: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * channels, values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return self.linear(torch.cat([flat.mean(2), flat.amax(2)], dim=1))


class PriorMixture(nn.Module):
    """sum_v w_v softmax(net_v(x)), returned as log-probabilities so it is a drop-in logit module.

    With a ``router`` and a binary ``swap``, net_v sees x where the router
    says x is drawn in value v and the swapped image where it says the other:
    sum_v w_v [r_v(x) softmax(net_v(x)) + (1 - r_v(x)) softmax(net_v(swap(x)))].
    """

    def __init__(self, members: list[nn.Module], weights: torch.Tensor, router: nn.Module | None = None,
                 swap: Sequence[int] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", weights.float())
        self.router = router
        self.swap = None if swap is None else list(swap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.router is None:
            log_probs = torch.stack([F.log_softmax(m(x), dim=1) for m in self.members])
        else:
            drawn_in = F.log_softmax(self.router(x), dim=1).T.unsqueeze(2)
            swapped = x[:, self.swap]
            log_probs = torch.stack([torch.logaddexp(F.log_softmax(m(x), dim=1) + drawn_in[v],
                                                     F.log_softmax(m(swapped), dim=1) + drawn_in[1 - v])
                                     for v, m in enumerate(self.members)])
        return torch.logsumexp(log_probs + self.weights.log().view(-1, 1, 1), dim=0)


class BiModel(Algorithm):
    """A network per attribute value, each trained on its own value's images."""

    name = "bi_model"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "counterfactual": False}
    search_space = {**SingleModel.search_space}
    requires = frozenset({"attribute"})

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        return cls.requires | ({"swap"} if hparams.get("counterfactual") else set())

    def __init__(self, backbone_factory, task, hparams) -> None:
        super().__init__(backbone_factory, task, hparams)
        k = task.num_attributes
        router = None
        if self.hparams["counterfactual"]:
            if k != 2:
                raise ValueError(f"bi_model: counterfactual needs a binary attribute; {task.dataset} has {k} values")
            router = AttributeRouter(task.input_shape[0], k)
        self.mixture = PriorMixture([backbone_factory() for _ in range(k)], torch.full((k,), 1.0 / k), router,
                                    task.swap_channels if router is not None else None)
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
        stats = {"loss": loss.item() / len(losses), "paired": float(paired)}
        if self.mixture.router is not None:
            routing = F.cross_entropy(self.mixture.router(batch.x), batch.attribute)
            loss = loss + routing
            stats["routing"] = routing.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return stats

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixture(x)

    def network(self) -> nn.Module:
        return self.mixture


@hookimpl
def oodbench_register_algorithms(register):
    register(BiModel)
