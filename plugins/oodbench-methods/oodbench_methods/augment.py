"""ERM on augmented images (seed report 001 §3, training sets 2a and 2b).

Dataset 2a recolors every training image with a random digit and a random
background color; 2b adds random grayscale, random resized crops and random
erasing. A network that never sees the same color twice cannot lean on it,
so the shape is what is left to learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oodbench import hookimpl
from oodbench.api import Batch, SingleModel, Uniform, pooled

TRANSFORMS = ("color", "grayscale", "crop", "erase")
"""What ``transforms`` may name, joined by ``+``; they always apply in this order."""
RGB_ONLY = ("color", "grayscale")


def contrast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of RGB colors [N, 3] as a fraction of black-to-white, as dataset specs measure ``min_contrast``."""
    return (a - b).norm(dim=1) / math.sqrt(3)


def color_pairs(n: int, min_contrast: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (digit, background) RGB pairs, uniform in [0, 1]^3, each pair redrawn while closer than ``min_contrast``."""
    digit, background = torch.rand(n, 3, device=device), torch.rand(n, 3, device=device)
    close = contrast(digit, background) < min_contrast
    while close.any():
        k = int(close.sum())
        digit[close], background[close] = torch.rand(k, 3, device=device), torch.rand(k, 3, device=device)
        close = contrast(digit, background) < min_contrast
    return digit, background


def ink(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel digit intensity [N, 1, H, W] in [0, 1] of images drawn as ``ink * digit + (1 - ink) * background``.

    The background is the top-left pixel (MNIST's borders carry no ink), the
    digit color the pixel farthest from it; the ink is each pixel's position
    on the line between the two. Exact for every two-color rendering of the
    dataset specs, whatever the colors.
    """
    background = x[:, :, :1, :1]
    offset = x - background
    far = offset.pow(2).sum(1).flatten(1).argmax(1)
    digit = offset.flatten(2).gather(2, far[:, None, None].expand(-1, x.shape[1], 1))[..., None]
    return ((offset * digit).sum(1, keepdim=True) / digit.pow(2).sum(1, keepdim=True).clamp_min(1e-8)).clamp(0, 1)


class RandomColor(nn.Module):
    """Redraws every image with its own random digit and background colors (seed 001's RandomColor).

    Vectorised over the batch: each image gets its own pair, redrawn while
    the two are closer than ``min_contrast``.
    """

    def __init__(self, min_contrast: float) -> None:
        super().__init__()
        self.min_contrast = min_contrast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        digit, background = color_pairs(len(x), self.min_contrast, x.device)
        d = ink(x)
        return d * digit[:, :, None, None] + (1 - d) * background[:, :, None, None]


def parse_transforms(text: str) -> tuple[str, ...]:
    """``"color+crop"`` -> ("color", "crop") in ``TRANSFORMS`` order; an unknown or empty name is an error."""
    names = [part.strip() for part in text.split("+")]
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown or not names:
        raise ValueError(f"augment: transforms {text!r} has unknown part(s) {', '.join(map(repr, unknown))} "
                         f"(allowed: {', '.join(TRANSFORMS)}, joined by '+')")
    return tuple(name for name in TRANSFORMS if name in names)


def pipeline(names: Sequence[str], hparams: dict[str, Any], size: tuple[int, int]) -> nn.Module | None:
    """The torchvision v2 composition of the named transforms other than ``color`` (None if there are none).

    torchvision is imported here, where a training needs it: importing it costs 1.7 s (it loads torch._dynamo),
    which every command that lists or validates algorithms would otherwise pay.
    """
    from torchvision.transforms import v2

    steps: dict[str, nn.Module] = {
        "grayscale": v2.RandomGrayscale(hparams["grayscale_p"]),
        "crop": v2.RandomResizedCrop(size, scale=(hparams["crop_scale"], 1.0), antialias=True),
        "erase": v2.RandomErasing(hparams["erase_p"]),
    }
    chosen = [steps[name] for name in names if name != "color"]
    return v2.Compose(chosen) if chosen else None


class Augment(SingleModel):
    """Cross-entropy on augmented copies of the pooled minibatch; ``predict`` sees the images as they are.

    ``transforms`` picks the seed's training set: ``color`` (2a, the default)
    or ``color+grayscale+crop+erase`` (2b). RandomColor recolors the whole
    batch at once, every image its own pair; the rest is a torchvision v2
    composition, which draws one set of random parameters per call, so the
    batch goes through it in groups of ``group_size`` images that share a
    grayscale, crop and erasing draw (``group_size = 1``: every draw per image,
    at several times the cost).
    """

    name = "augment"
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "transforms": "color", "min_contrast": 0.4, "grayscale_p": 0.1,
                "crop_scale": 0.5, "erase_p": 0.5, "group_size": 8}
    # group_size trades cost for per-image draws: not searched
    search_space = {**SingleModel.search_space,
                    "min_contrast": Uniform(0.2, 0.6, limits=(0.0, 0.75)),
                    "grayscale_p": Uniform(0.0, 0.5, limits=(0.0, 1.0)),
                    "crop_scale": Uniform(0.25, 0.75, limits=(0.01, 1.0)),
                    "erase_p": Uniform(0.0, 1.0)}

    def __init__(self, backbone_factory, task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        names = parse_transforms(self.hparams["transforms"])
        rgb = [name for name in names if name in RGB_ONLY]
        if rgb and task.input_shape[0] != 3:
            what = f"the {' and '.join(rgb)} transform" + ("s need" if len(rgb) > 1 else " needs")
            raise ValueError(f"augment: {what} 3-channel RGB images; dataset {task.dataset} has "
                             f"{task.input_shape[0]} channel(s) (use transforms without {' or '.join(rgb)})")
        if not 0 <= self.hparams["min_contrast"] <= 0.75:
            raise ValueError(f"augment: min_contrast {self.hparams['min_contrast']} not in [0, 0.75] "
                             "(random pairs far apart are rare above that)")
        if self.hparams["group_size"] < 1:
            raise ValueError(f"augment: group_size {self.hparams['group_size']} must be at least 1")
        self.color = RandomColor(self.hparams["min_contrast"]) if "color" in names else None
        self.transform = pipeline(names, self.hparams, tuple(task.input_shape[1:]))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The batch recolored, then through the v2 composition ``group_size`` images per call."""
        with torch.no_grad():
            if self.color is not None:
                x = self.color(x)
            if self.transform is None:
                return x
            return torch.cat([self.transform(group) for group in x.split(self.hparams["group_size"])])

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = pooled(batches)
        return F.cross_entropy(self.model(self.augment(batch.x)), batch.y), {}


@hookimpl
def oodbench_register_algorithms(register):
    register(Augment)
