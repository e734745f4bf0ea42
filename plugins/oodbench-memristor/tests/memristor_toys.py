"""Small, fast stand-ins for the tests: a toy two-colour bar task and a tiny CNN trained on it in a second.

Crossbars use 16x16 tiles here (``SMALL_TILES``) so a conversion builds a few
thousand device objects instead of the default CNN's 360 000; the default
tile shape is exercised by the CLI smoke test and the benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oodbench.builtin.cnn import CNN

SHAPE = (2, 12, 12)
SMALL_TILES = {"tile_rows": 16, "tile_cols": 16}


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of a vertical (label 1) or horizontal (label 0) bar, drawn in a random one of two channels, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=generator)
    channel = torch.randint(0, 2, (n,), generator=generator)
    position = torch.randint(2, SHAPE[1] - 2, (n,), generator=generator)
    x = torch.rand(n, *SHAPE, generator=generator) * 0.3
    for i in range(n):
        if y[i]:
            x[i, channel[i], :, position[i]] = 1.0
        else:
            x[i, channel[i], position[i], :] = 1.0
    return x, y


def trained_cnn(seed: int = 0, steps: int = 150) -> CNN:
    """A CNN (width 4, hidden 16) trained on ``bars`` to near-perfect accuracy: logits with real margins."""
    torch.manual_seed(seed)
    model = CNN(SHAPE, 2, width=4, hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = bars(512, seed)
    for step in range(steps):
        index = torch.arange(step * 64, (step + 1) * 64) % len(x)
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def conductances(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every crossbar's conductance matrix (G+ and G- of each memristive layer), in module order."""
    return [crossbar.conductance_matrix.clone() for _, layer in model.named_modules() if hasattr(layer, "crossbars")
            for crossbar in layer.crossbars]


def images(n: int, seed: int) -> torch.Tensor:
    """Inputs that reach every branch of the crossbar path: all-zero samples, peaks above 0.3 V, negative values."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=generator) * torch.linspace(0, 3, n).view(-1, 1, 1, 1)
    x[-1] -= 0.5
    return x
