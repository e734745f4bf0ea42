"""Named colors, channel layouts, contrast and seeded random colors.

A color is an RGB triple of bytes; a layout decides which of its channels an
image keeps (``red_green`` drops blue, as the IRM code's two-channel images
do; ``gray`` keeps the brightest channel, so a saturated digit stays bright).
Contrast is measured in the channels a model actually sees, so two colors
that a layout renders alike count as one.
"""

from __future__ import annotations

import math

import torch

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "orange": (255, 128, 0),
    "purple": (128, 0, 255),
    "gray": (128, 128, 128),
}

RANDOM = "random"
"""In place of a color name: a color drawn per sample from the seed, uniform over RGB bytes."""

LAYOUTS: dict[str, int] = {"red_green": 2, "rgb": 3, "gray": 1}
"""Channel layouts and their channel counts."""


def project(rgb: torch.Tensor, layout: str) -> torch.Tensor:
    """RGB colors [N, 3] as the channels of ``layout`` [N, C] (int64)."""
    rgb = rgb.long()
    if layout == "rgb":
        return rgb
    if layout == "red_green":
        return rgb[:, :2]
    if layout == "gray":
        return rgb.amax(dim=1, keepdim=True)
    raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")


def as_seen(rgb: torch.Tensor, layout: str, grayscale: bool) -> torch.Tensor:
    """RGB colors [N, 3] as a model sees them: the layout's channels, reduced to the brightest by ``grayscale``."""
    colors = project(rgb, layout)
    return colors.amax(dim=1, keepdim=True) if grayscale else colors


def contrast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of layout colors [N, C], as a fraction of black-to-white in those C channels."""
    channels = a.shape[1]
    return (a - b).float().norm(dim=1) / (255.0 * math.sqrt(channels))


def named(name: str) -> torch.Tensor:
    """The RGB triple of a palette color as a [1, 3] tensor."""
    return torch.tensor([PALETTE[name]], dtype=torch.long)


def random_rgb(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` RGB colors [n, 3], every byte uniform."""
    return torch.randint(0, 256, (n, 3), generator=generator)
