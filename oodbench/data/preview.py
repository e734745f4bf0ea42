"""A PNG grid of a dataset's environments, to see at a glance what a construction produced."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from oodbench.api import Environment


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Images [N, C, H, W] (uint8 or float in [0, 1]) as float RGB [N, H, W, 3].

    Two channels are read as red and green (blue 0), one as gray, three as RGB.
    """
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    channels = x.shape[1]
    if channels == 1:
        x = x.expand(-1, 3, -1, -1)
    elif channels == 2:
        x = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
    elif channels != 3:
        raise ValueError(f"cannot preview images with {channels} channels (1, 2 or 3)")
    return x.permute(0, 2, 3, 1).clamp(0, 1)


def describe(env: Environment, attribute_values: Sequence[str]) -> str:
    """Row title: name, role, size and the observed label and attribute statistics.

    Only the attribute values the environment holds are listed; the share of
    samples whose attribute index differs from the label (the flip rate of a
    label-aligned attribute) only for binary attributes, where it means that.
    """
    n = len(env)
    counts = torch.bincount(env.attribute, minlength=len(attribute_values)).tolist()
    shares = ", ".join(f"{value} {count / n:.1%}" for value, count in zip(attribute_values, counts) if count)
    title = f"{env.name} ({env.role}), n={n}: y=1 {(env.y == 1).float().mean().item():.1%}; {shares}"
    if len(attribute_values) == 2:
        title += f"; attribute != label {(env.attribute != env.y).float().mean().item():.1%}"
    return title


def preview(
    envs: Sequence[Environment],
    out: Path,
    per_env: int = 8,
    attribute_values: Sequence[str] = ("red", "green"),
) -> Path:
    """Write one row of ``per_env`` images per environment, each titled with its label, to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig = plt.figure(figsize=(max(1.3 * per_env, 7.0), 1.75 * len(envs)), layout="constrained")
    rows = fig.subfigures(len(envs), 1, squeeze=False)[:, 0]
    for row, env in zip(rows, envs):
        row.suptitle(describe(env, attribute_values), fontsize=9)
        shown = min(per_env, len(env))
        images = to_rgb(env.x[:shown])
        for i, ax in enumerate(row.subplots(1, per_env, squeeze=False)[0]):
            ax.set_axis_off()
            if i < shown:
                ax.imshow(images[i].numpy(), interpolation="nearest")
                ax.set_title(f"y={int(env.y[i])}", fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor="white")
    plt.close(fig)
    return out
