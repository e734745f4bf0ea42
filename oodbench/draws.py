"""Device draws: a stochastic target deployed several times, each an independently seeded chip.

A target that declares ``draws`` in its ``defaults`` is stochastic (its
devices fail, drift or vary at random): the harness deploys the same trained
network ``draws`` times and evaluates each chip. Draw 0 uses the cell's own
seed, so ``draws = 1`` is the single deployment of before; draw ``i`` > 0 a
seed hashed from (cell seed, i), so draws never collide with another seed's.
Results keep every draw; the cell's row is the mean over draws
(``metrics.mean_over_draws``), and reports give the spread over draws within
a seed apart from the spread over seeds.
"""

from __future__ import annotations

import hashlib
from typing import Any

DRAWS = "draws"
"""The target hyperparameter that makes a target stochastic: how many chips to draw."""

MAX_DRAWS = 1000
"""The most draws a cell may ask for; the matrix refuses more in one line (``Components.space``)."""


def draw_seed(seed: int, draw: int) -> int:
    """The seed of draw ``draw`` of a cell seeded ``seed``: the seed itself for draw 0, else a stable hash."""
    if draw == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"draw:{seed}:{draw}".encode()).digest()[:4], "big") % 2**31


def draw_count(target_hparams: dict[str, Any]) -> int:
    """How many chips a cell with these target hyperparameters deploys (1 for a deterministic target)."""
    return int(target_hparams.get(DRAWS, 1))
