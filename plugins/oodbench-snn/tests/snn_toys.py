"""Tiny tasks, environments and batches for the SNN tests (a helper module, not a test file)."""

import torch

from oodbench.api import Batch, Environment, Task, make_groups

SHAPE = (2, 16, 16)
"""Small enough to be quick, big enough for two 3x3 conv + 2x2 pool stages (16 -> 7 -> 2)."""


def task(sources: tuple[str, ...] = ()) -> Task:
    return Task("toy", SHAPE, 2, ("e0", "e1"), "color", ("red", "green"), swap_channels=(1, 0),
                source_names=sources)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def batch(n: int = 8, env: int = 0, seed: int = 0) -> Batch:
    """A minibatch holding every (label, color) group, so no method finds one missing."""
    y = torch.arange(n) % 2
    attribute = (torch.arange(n) // 2) % 2
    return Batch(images(n, seed), y, torch.full((n,), env), make_groups(y, attribute, 2), attribute)


def environment(n: int = 16, seed: int = 0) -> Environment:
    b = batch(n, seed=seed)
    return Environment(f"e{seed}", "train", b.x, b.y, b.attribute, b.group, ceiling=0.75)
