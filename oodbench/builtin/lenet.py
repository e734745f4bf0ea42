"""LeNet-5 as seed report 001 §2.1 adapted it: ReLU after every conv and dense layer, any input, 2 outputs."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from oodbench import hookimpl

MIN_SIZE = 12
"""Smallest height and width the two 5x5 convolutions and two 2x2 poolings leave a feature map for."""


class LeNet(nn.Module):
    """conv5x5(6, same padding)-pool-conv5x5(16)-pool-Flatten-120-84 as featurizer, a linear classifier.

    The seed's changes to LeCun's network: ReLU instead of sigmoid, RGB
    28x28 input instead of gray 32x32 (the first convolution pads by 2, so a
    28x28 image sees the same 5x5 map the original's 32x32 did), two classes.
    Any channel count and any size of at least ``MIN_SIZE`` is accepted; the
    conv layers come before the ``nn.Flatten`` so RSC can mute their map.
    """

    name = "lenet"
    defaults: ClassVar[dict[str, int]] = {}

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        if min(height, width) < MIN_SIZE:
            raise ValueError(f"lenet needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {height}x{width}")
        conv = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = conv(torch.zeros(1, *input_shape)).shape[1]
        self.featurizer = nn.Sequential(*conv, nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)
        self.n_features = 84

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


@hookimpl
def oodbench_register_backbones(register):
    register(LeNet)
