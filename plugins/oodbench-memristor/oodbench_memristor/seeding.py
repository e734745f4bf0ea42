"""The random state a conversion draws from, seeded per cell.

memtorch draws device faults from NumPy's global RNG and ``tune_()`` draws its
calibration inputs from torch's; both are seeded from the cell's seed for the
conversion and restored afterwards, so deploying never shifts the caller's
random streams and the same seed gives the same faulty network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with NumPy's and torch's global RNGs seeded from ``seed``; restore both after."""
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
