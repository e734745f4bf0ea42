"""Hardware-aware training: the network trains through its target's device model, with no change to the method.

``training.hardware_aware = "TARGET"`` makes every training step see the
weights as one random chip of that target would hold them: during each
epoch every layer's weight is replaced by ``target.perturb_weight(layer,
weight, generator)`` (a fresh draw at every forward), and the gradient flows
to the clean weight as if the perturbation were the identity (the
straight-through estimate of noise-injection training, as in IBM's aihwkit).
Evaluation between epochs and the checkpoints see the clean weights; the
targets deploy those. The target decides which layers it perturbs and how
(``oodbench.api.PerturbingTarget``); the algorithm is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

SEED_OFFSET = 7_919
"""The perturbations' generator is seeded with the training seed plus this, apart from the data order's."""


class _Perturbed(nn.Module):
    """A weight parametrization: the target's perturbed weight forward, the identity backward."""

    def __init__(self, target: Any, layer: nn.Module, generator: torch.Generator) -> None:
        super().__init__()
        self.target, self.layer, self.generator = [target], [layer], generator  # lists: not submodules

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            noisy = self.target[0].perturb_weight(self.layer[0], weight.detach(), self.generator)
        return weight if noisy is None else weight + (noisy - weight).detach()


@contextmanager
def perturbed(network: nn.Module, target: Any, generator: torch.Generator) -> Iterator[None]:
    """Within the block, every layer ``target`` perturbs reads its weight through the target's devices."""
    layers = [m for m in network.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)
              and target.perturb_weight(m, m.weight.detach(), torch.Generator().manual_seed(0)) is not None]
    orders = [list(layer._parameters) for layer in layers]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", _Perturbed(target, layer, generator))
    try:
        yield
    finally:
        for layer, order in zip(layers, orders):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
            layer._parameters = {name: layer._parameters[name] for name in order}  # state_dict order as before


def perturbing_target(training: dict[str, Any]) -> Any | None:
    """The target named by ``training["hardware_aware"]``, with its defaults, or None when it is off."""
    name = training.get("hardware_aware")
    if not name:
        return None
    from oodbench.plugins import get_plugins

    return get_plugins().registry("targets").get(name)()
