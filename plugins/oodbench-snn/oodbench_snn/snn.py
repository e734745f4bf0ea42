"""The ``snn`` backbone: the ``cnn`` backbone's layers with leaky integrate-and-fire neurons in place of ReLUs.

Registered through the ``oodbench`` entry point ``snn``; docs/snn.md gives the
design, the defaults and their measured cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from oodbench import hookimpl
from oodbench.api import Bounded, SearchSpace, Uniform
from oodbench_snn.lif import LIF
from oodbench_snn.timesteps import EachStep, Encode, Rate, StackTime, UnstackTime


def conv_pool(side: int) -> int:
    """Side of a feature map after a 3x3 convolution without padding and a 2x2 max-pool."""
    return (side - 2) // 2


class SNN(nn.Module):
    """Conv-pool-BN-LIF twice, then dense-BN-LIF, read out as firing rates by a linear classifier.

    Each image becomes a train of ``steps`` inputs (``encoding``: ``direct``
    repeats the image, ``rate`` draws Bernoulli spikes); the conv and dense
    layers run on all steps at once and only the neurons step through time.
    Pooling comes before each LIF layer (it pools input currents), so the
    neurons run on a quarter of the positions. Each layer's input current is
    batch-normalised over the batch and the steps: without it the last hidden
    layer starts silent (no spike at all on ColoredMNIST at initialisation)
    and only the surrogate's tails carry a gradient.

    Split for feature-level methods: the featurizer runs all T steps and
    returns the last hidden layer's firing rates, a flat ``hidden``-wide vector
    in [0, 1] that DANN's domain head and CNC's contrast use like the CNN's
    features. The classifier is a linear layer on those rates, which
    equals the final membrane, divided by T, of a non-leaking, non-firing
    readout neuron integrating the spikes: a rate cross-entropy trains
    directly. Inside the featurizer an ``nn.Flatten`` follows the second
    spiking conv layer's trains stacked as one [T*C, H, W] feature map, where
    RSC mutes channels (a map at one step) or positions (across all steps).
    """

    name = "snn"
    defaults: ClassVar[dict[str, Any]] = {"steps": 4, "encoding": "direct", "beta": 0.9, "width": 16, "hidden": 128}
    # steps, width and hidden set the cost or the network, as cnn's widths do: checked, not searched
    search_space: ClassVar[SearchSpace] = {"beta": Uniform(0.5, 0.99, limits=(0.0, 1.0)), "steps": Bounded(1, 64),
                                           "width": Bounded(1, 1024), "hidden": Bounded(1, 65536)}

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, steps: int = 4, encoding: str = "direct",
                 beta: float = 0.9, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        channels, *sides = input_shape
        rows, cols = (conv_pool(conv_pool(side)) for side in sides)
        if rows < 1 or cols < 1:
            raise ValueError(f"snn needs images of at least 10x10 for its two conv-pool stages, got {input_shape}")
        self.featurizer = nn.Sequential(
            Encode(steps, encoding),
            EachStep(nn.Conv2d(channels, width, 3), nn.MaxPool2d(2), nn.BatchNorm2d(width)),
            LIF(beta),
            EachStep(nn.Conv2d(width, 2 * width, 3), nn.MaxPool2d(2), nn.BatchNorm2d(2 * width)),
            LIF(beta),
            StackTime(),
            nn.Flatten(),
            UnstackTime(steps),
            EachStep(nn.Linear(2 * width * rows * cols, hidden), nn.BatchNorm1d(hidden)),
            LIF(beta),
            Rate(),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        self.n_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


@hookimpl
def oodbench_register_backbones(register: Callable[..., object]) -> None:
    register(SNN)
