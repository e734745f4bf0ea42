"""``oodbench explain``: Grad-CAM maps of a trained cell's last conv layer on its test images (seed 001 §3.3).

Grad-CAM weighs each channel of a conv layer's output by the mean gradient
of the predicted class's logit over it and keeps the positive part of the
weighted sum: where the network looked. The maps come from the maintained
``grad-cam`` package (``pytorch_grad_cam``); this module finds the cell, rebuilds
its float network from the checkpoint its selection rule picked, and draws
the grid. Targets are not applied: the map explains the trained network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oodbench.errors import UsageError

LABEL_PARTS = ("dataset", "backbone", "algorithm", "target", "seed")


def _label(cell: dict[str, Any]) -> str:
    return "/".join(str(cell[k]) if k != "seed" else f"seed{cell[k]}" for k in LABEL_PARTS)


def _listing(cells: Sequence[dict[str, Any]]) -> str:
    """Up to five cells as ``key-prefix label [sweep values, configuration]``, to choose among."""
    from oodbench.report import variant_label

    def extra(cell: dict[str, Any]) -> str:
        parts = [variant_label(cell["variant"]), f"config {cell['config']}" if cell["config"] else ""]
        text = ", ".join(filter(None, parts))
        return f" [{text}]" if text else ""

    shown = [f"{c['key'][:8]} {_label(c)}{extra(c)}" for c in cells[:5]]
    return ", ".join(shown) + (" ..." if len(cells) > 5 else "")


def select_cell(cells: Sequence[dict[str, Any]], selector: str) -> dict[str, Any]:
    """The one done cell whose key starts with ``selector``, or whose label
    ``dataset/backbone/algorithm/target/seedN`` starts with its ``/``-separated parts."""
    parts = selector.strip("/").split("/")
    done = [c for c in cells if c["status"] == "done"]
    matches = [c for c in done if c["key"].startswith(selector)] if len(parts) == 1 else []
    if not matches:
        matches = [c for c in done if _label(c).split("/")[:len(parts)] == parts]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"--cell {selector!r}: no done cell has that key prefix or label "
                         f"(dataset/backbone/algorithm/target/seedN); done cells: {_listing(done) or 'none'}")
    raise UsageError(f"--cell {selector!r} matches {len(matches)} cells ({_listing(matches)}); "
                     "give more of the label or a key prefix")


def last_conv(network: nn.Module) -> nn.Conv2d:
    """The network's last ``nn.Conv2d`` in registration order: Grad-CAM's layer, as in the seed."""
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError(f"Grad-CAM needs a conv layer; the network ({type(network).__name__}) has none "
                         "(use a conv backbone such as cnn or lenet)")
    return convs[-1]


def _require_grad_cam() -> None:
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise UsageError("oodbench explain needs the grad-cam package: pip install 'oodbench[explain]'") from None


def class_activation_maps(network: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM maps [N, H, W] in [0, 1] for each image's predicted class, and the predictions."""
    _require_grad_cam()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    network.eval()
    with torch.no_grad():
        predicted = network(x).argmax(1)
    with GradCAM(model=network, target_layers=[last_conv(network)]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in predicted])
    return maps, predicted


@dataclass
class Panel:
    """One test environment's images, their labels, predictions and maps."""

    env: str
    images: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    maps: np.ndarray


def load_network(run_dir: Path, cell: dict[str, Any], selection: str) -> tuple[nn.Module, list, int]:
    """The cell's float network at the checkpoint ``selection`` takes of it, the cell's evaluation splits and
    that epoch (the cell names the configuration, so no configuration is chosen here)."""
    from oodbench.train import Job, build_algorithm, checkpoint_path, prepare

    from oodbench.selection import RULES

    selected = json.loads(cell["selected"] or "{}")
    checkpoint = RULES[selection].checkpoint
    if checkpoint not in selected:
        raise UsageError(f"--selection {selection!r}: cell {cell['key'][:8]} has no {checkpoint} checkpoint "
                         f"(it has {', '.join(selected) or 'none'})")
    hparams = cell["hparams"]
    job = Job(training_key=cell["training"], dataset=cell["dataset"], backbone=cell["backbone"],
              algorithm=cell["algorithm"], seed=cell["seed"], training=hparams["training"],
              algorithm_hparams=hparams["algorithm"], backbone_hparams=hparams["backbone"], cells=[],
              checkpoint_dir=str(Path(run_dir) / "checkpoints" / cell["training"]))
    path = checkpoint_path(job, selected[checkpoint])
    if not path.is_file():
        raise UsageError(f"{path}: checkpoint missing (was the run directory moved or pruned?)")
    torch.manual_seed(job.seed)
    prepared = prepare(job, torch.device("cpu"))
    algorithm = build_algorithm(job, prepared.task)
    algorithm.load_state_dict(torch.load(path, map_location="cpu"))
    return algorithm.network(), prepared.splits, selected[checkpoint]


def panels(network: nn.Module, splits: Sequence, envs: Sequence[str], n: int) -> list[Panel]:
    """The first ``n`` images of each chosen test environment (all test environments when none is named)."""
    tests = {s.env: s.eval_data for s in splits if s.role == "test" and s.part == "main"}
    unknown = [e for e in envs if e not in tests]
    if unknown:
        raise UsageError(f"--env {', '.join(unknown)}: not a test environment (allowed: {', '.join(tests)})")
    out = []
    for env in envs or list(tests):
        data = tests[env]
        x = data.x[:n]
        maps, predicted = class_activation_maps(network, x)
        out.append(Panel(env, x, data.y[:n], predicted, maps))
    return out


def draw(panels: Sequence[Panel], title: str, out: Path) -> Path:
    """Two rows per environment: the images titled with their label, then the maps over them with the prediction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from oodbench.data.preview import to_rgb

    columns = max(len(p.images) for p in panels)
    figure = Figure(figsize=(max(1.1 * columns, 6.0), 2.5 * len(panels) + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=9)
    for row, panel in zip(figure.subfigures(len(panels), 1, squeeze=False)[:, 0], panels):
        row.suptitle(panel.env, fontsize=8)
        axes = row.subplots(2, columns, squeeze=False)
        rgb = to_rgb(panel.images).numpy().astype(np.float32)
        for i in range(columns):
            for ax in axes[:, i]:
                ax.set_axis_off()
            if i >= len(rgb):
                continue
            axes[0, i].imshow(rgb[i], interpolation="nearest")
            axes[0, i].set_title(f"y={int(panel.labels[i])}", fontsize=7)
            axes[1, i].imshow(show_cam_on_image(rgb[i], panel.maps[i], use_rgb=True), interpolation="nearest")
            axes[1, i].set_title(f"pred {int(panel.predicted[i])}", fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100, facecolor="white")
    return out


def explain(run_dir: Path, selector: str, out: Path, n: int = 16, selection: str = "val",
            envs: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Write the Grad-CAM grid of the cell ``selector`` of ``run_dir`` to ``out``; returns the path and the cell."""
    from oodbench.report import open_store

    _require_grad_cam()
    with open_store(run_dir) as store:
        cell = select_cell(store.cells(), selector)
    network, splits, epoch = load_network(run_dir, cell, selection)
    title = f"Grad-CAM of {last_conv(network)!r} · {_label(cell)} · epoch {epoch} ({selection})"
    return draw(panels(network, splits, envs, n), title, out), cell
