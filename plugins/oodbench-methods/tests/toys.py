"""Tiny backbones, tasks and batches for the method tests (a helper module, not a test file)."""

import torch
from torch import nn

from oodbench.api import Batch, Task, make_groups


class TinyConv(nn.Module):
    """A backbone shaped like the CNN: conv layers, Flatten, a dense layer as featurizer; a linear classifier."""

    name = "tiny_conv"

    def __init__(self, channels=2, size=4, width=3, hidden=5, num_classes=2):
        super().__init__()
        self.featurizer = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(width * size * size, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)
        self.n_features = hidden

    def forward(self, x):
        return self.classifier(self.featurizer(x))


class TinyDense(nn.Module):
    """A backbone with nothing before its Flatten, like the MLP."""

    name = "tiny_dense"

    def __init__(self, channels=2, size=4, num_classes=2):
        super().__init__()
        self.featurizer = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 5), nn.ReLU())
        self.classifier = nn.Linear(5, num_classes)
        self.n_features = 5

    def forward(self, x):
        return self.classifier(self.featurizer(x))


def task(envs=("e0", "e1"), sources=()):
    return Task("toy", (2, 4, 4), 2, tuple(envs), "color", ("red", "green"), source_names=tuple(sources))


def batch(n=8, env=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n,), generator=g)
    attribute = torch.randint(2, (n,), generator=g)
    return Batch(torch.rand(n, 2, 4, 4, generator=g), y, torch.full((n,), env), make_groups(y, attribute, 2),
                 attribute)
