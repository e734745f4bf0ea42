"""The multilayer perceptron of the IRM paper's ColoredMNIST experiments."""

from __future__ import annotations

import math

import torch
from torch import nn

from oodbench import hookimpl
from oodbench.api import Bounded


class MLP(nn.Module):
    """Flatten, ``depth`` ReLU layers of width ``hidden`` as featurizer, a linear classifier."""

    name = "mlp"
    defaults = {"hidden": 256, "depth": 2}
    search_space = {"hidden": Bounded(1, 65536), "depth": Bounded(1, 64)}

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.featurizer = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.n_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


@hookimpl
def oodbench_register_backbones(register):
    register(MLP)
