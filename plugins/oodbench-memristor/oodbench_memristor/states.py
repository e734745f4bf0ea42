"""The ``memristor_states`` target: devices that hold only a finite number of conductance states.

memtorch 1.1.6's ``NonIdeality.FiniteConductanceStates`` changes nothing: it
passes per-device bound tensors to a quantiser binding that accepts floats,
and a bare ``except`` restores the original conductances. This target calls
the same quantiser (``memtorch.bh.Quantize.quantize``: ``conductance_states``
evenly spaced levels from 1/r_off to 1/r_on, each device moved to the nearest)
with the scalar bounds all devices share, so the states are really finite.
Non-linear I/V (``NonIdeality.NonLinear``) is not offered: its inference path
simulates every device of every product in Python (docs/memristor.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import (
    DEVICE_DEFAULTS,
    import_memtorch,
    memtorch_layers,
)
from oodbench_memristor.ideal import MemristorTarget

STATES_DEFAULTS: dict[str, Any] = {"conductance_states": 5, "retune": False}


def quantize_conductances(model: nn.Module, states: int) -> None:
    """Move every device of every crossbar of ``model`` to the nearest of ``states`` levels in [1/r_off, 1/r_on]."""
    memtorch = import_memtorch()
    for name, layer in memtorch_layers(model):
        for crossbar in layer.crossbars:
            r_on = np.unique(np.vectorize(lambda d: d.r_on)(crossbar.devices))
            r_off = np.unique(np.vectorize(lambda d: d.r_off)(crossbar.devices))
            if r_on.size != 1 or r_off.size != 1:
                raise ValueError(f"layer {name}: devices differ in r_on/r_off; finite states need one range per crossbar")
            low, high = 1 / float(r_off[0]), 1 / float(r_on[0])
            shape = crossbar.conductance_matrix.shape
            clipped = crossbar.conductance_matrix.reshape(-1).clamp(low, high).float()
            crossbar.conductance_matrix = memtorch.bh.Quantize.quantize(
                clipped, states, min=low, max=high).view(shape).to(torch.float32)


class StatesTarget(MemristorTarget):
    """memristor, then every device rounded to one of a finite number of conductance states."""

    name: ClassVar[str] = "memristor_states"
    defaults: ClassVar[dict[str, Any]] = DEVICE_DEFAULTS | STATES_DEFAULTS

    def nonidealities(self) -> Callable[[nn.Module], None]:
        states = self.hparams["conductance_states"]
        if not isinstance(states, int) or states < 2:
            raise ValueError(f"conductance_states must be an integer of at least 2, got {states!r}")
        return lambda model: quantize_conductances(model, states)


@hookimpl
def oodbench_register_targets(register):
    register(StatesTarget)
