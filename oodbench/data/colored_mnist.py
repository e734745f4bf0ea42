"""ColoredMNIST exactly as the seed report builds it (report 000, section 2.1).

Binary label ``1(digit >= 5)`` flipped with p = 0.25; the digit is painted red
for (noisy) label 0 and green for label 1, then the color is flipped with an
environment's own probability. The slices and rates are data, not code, so a
declarative spec can describe the variants later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from oodbench.api import Environment, make_groups
from oodbench.data.mnist import load_mnist

RED, GREEN = 0, 1
"""Attribute values, which are also the image channel the digit is painted into."""


@dataclass(frozen=True)
class EnvSlice:
    """One environment: images ``start:stop`` of the MNIST training set and their color-flip rate."""

    name: str
    start: int
    stop: int
    color_flip: float
    role: str


@dataclass(frozen=True)
class ColoredMNISTSpec:
    """The whole construction: environments plus the label noise shared by all of them."""

    envs: tuple[EnvSlice, ...]
    label_noise: float = 0.25
    digit_threshold: int = 5

    @property
    def ceiling(self) -> float:
        """Best reachable accuracy: the shape predicts the clean label, which is kept with 1 - noise."""
        return 1.0 - self.label_noise


REPORT_SPEC = ColoredMNISTSpec(
    envs=(
        EnvSlice("train1", 0, 20_000, 0.2, "train"),
        EnvSlice("train2", 20_000, 40_000, 0.1, "train"),
        EnvSlice("test", 40_000, 60_000, 0.9, "test"),
    ),
)


def color_digits(images: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Paint uint8 [N, 28, 28] digits into channel ``colors`` of a [N, 2, 28, 28] image (0 red, 1 green)."""
    out = torch.zeros((len(images), 2, *images.shape[1:]), dtype=images.dtype)
    out[torch.arange(len(images)), colors.long()] = images
    return out


def build_colored_mnist(
    images: torch.Tensor, digits: torch.Tensor, seed: int, spec: ColoredMNISTSpec = REPORT_SPEC
) -> list[Environment]:
    """Environments of ``spec`` from MNIST training images and digit labels, deterministic per seed.

    Both coin flips of image i come from one pair of uniform draws over the
    whole training set, so an environment's draws do not depend on the others.
    """
    total = max(env.stop for env in spec.envs)
    if len(images) < total or len(digits) != len(images):
        raise ValueError(f"ColoredMNIST needs {total} images with one digit each, got {len(images)} and {len(digits)}")
    generator = torch.Generator().manual_seed(seed)
    label_draw = torch.rand(total, generator=generator)
    color_draw = torch.rand(total, generator=generator)
    clean = (digits[:total] >= spec.digit_threshold).long()
    y = clean ^ (label_draw < spec.label_noise).long()
    environments = []
    for env in spec.envs:
        part = slice(env.start, env.stop)
        color = y[part] ^ (color_draw[part] < env.color_flip).long()
        environments.append(
            Environment(
                name=env.name,
                role=env.role,
                x=color_digits(images[part], color),
                y=y[part].clone(),
                attribute=color,
                group=make_groups(y[part], color, 2),
                ceiling=spec.ceiling,
            )
        )
    return environments


class ColoredMNIST:
    """The seed report's ColoredMNIST as a registered dataset."""

    name = "colored_mnist"
    num_classes = 2
    attribute = "color"
    attribute_values = ("red", "green")
    provides = frozenset({"env", "group", "attribute", "swap"})
    swap_channels = (GREEN, RED)

    def __init__(self, spec: ColoredMNISTSpec = REPORT_SPEC) -> None:
        self.spec = spec

    def build(self, seed: int, data_dir: Path | None) -> list[Environment]:
        """Environments for ``seed`` from the MNIST training set (``data_dir``: a user's IDX directory)."""
        mnist = load_mnist(data_dir)
        return build_colored_mnist(mnist.train_x, mnist.train_y, seed, self.spec)
