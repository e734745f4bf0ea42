"""Pixels: a gray digit drawn in one color over another, downsampling and per-environment transforms.

Everything stays in integers, so a red digit on black is the MNIST bytes in
the red channel exactly (the seed report's construction, byte for byte).
"""

from __future__ import annotations

import torch

CHUNK = 4096
"""Images per step of the general blend: bounds its int64 gather index to ~80 MB at 3x28x28."""

TRANSFORMS = ("grayscale",)
"""Per-environment transforms a spec may name."""


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 digits [N, 28, 28] at ``size`` 28 (as is) or 14 (every other row and column, as the IRM code)."""
    if size == 28:
        return images
    if size == 14:
        return images[:, ::2, ::2]
    raise ValueError(f"image size must be 28 or 14, got {size}")


def blend(digits: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, H, W]: each digit's ink in its ``foreground`` color over its ``background``.

    ``digits`` is uint8 [N, H, W] (255 = full ink); the colors are [N, C]
    integers in 0..255. A pixel is ``(d * fg + (255 - d) * bg + 127) // 255``
    (round half up). Integer division is slow on CPUs, so colors made of 0
    and 255 only (every named color but orange, purple and gray) take a
    uint8 shortcut with the same result: ``bg + d``, ``bg - d`` or ``bg``.
    """
    foreground, background = foreground.long(), background.long()
    if bool(((foreground % 255 == 0) & (background % 255 == 0)).all()):
        step = ((foreground - background) // 255 % 256).to(torch.uint8)[:, :, None, None]
        return digits[:, None] * step + background.to(torch.uint8)[:, :, None, None]
    return _blend_lookup(digits, foreground, background)


def _blend_lookup(digits: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The general blend: a 256-entry table per image and channel, gathered by ink level."""
    n, height, width = digits.shape
    channels = foreground.shape[1]
    ink = torch.arange(256)
    out = torch.empty((n, channels, height, width), dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        table = (ink * foreground[part, :, None] + (255 - ink) * background[part, :, None] + 127) // 255
        count = len(table)
        index = digits[part].reshape(count, 1, -1).long().expand(count, channels, -1)
        out[part] = torch.gather(table.to(torch.uint8), 2, index).view(count, channels, height, width)
    return out


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Every channel replaced by the brightest one: the colors go, the shape of the ink stays."""
    return images.amax(dim=1, keepdim=True).expand_as(images).contiguous()


def apply_transforms(images: torch.Tensor, transforms: tuple[str, ...]) -> torch.Tensor:
    """``images`` after each named transform in order."""
    for name in transforms:
        if name == "grayscale":
            images = grayscale(images)
        else:
            raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORMS}")
    return images
