"""A worker's last programmed chips, kept so that every deployment of the same network reuses its chip.

Programming (memtorch's ``patch_model``: two Python device objects per weight,
tile padding included) and calibrating (``tune_()``) take about 30 s for the
default CNN and give the same fresh chip for every target, device draw and
read-out time that deploys this network with these device settings; only the
non-idealities differ. So the fresh chip stays in memory (the last
``CHIPS_KEPT`` asked for in this worker: one per checkpoint the selection
rules picked, which every target of a training deploys in turn) with a copy
of its fresh conductances and read-out calibration, and each deployment
restores those before applying its own non-idealities. Calibration draws its random inputs from a fixed seed, not
the cell's: the fresh chip is a function of the network and the settings
alone, whichever deployment built it.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CALIBRATION_SEED = 0
"""Seed of ``tune_()``'s random calibration inputs on a fresh chip."""


def network_fingerprint(network: nn.Module) -> str:
    """sha256 of the network's structure and every parameter and buffer: equal networks share a chip."""
    digest = hashlib.sha256(repr(network).encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Chip:
    """A programmed, calibrated model and its fresh state: each layer's conductances and read-out calibration."""

    model: nn.Module
    fresh: list[tuple[nn.Module, list[torch.Tensor], Any]]

    @classmethod
    def of(cls, model: nn.Module, layers: list[nn.Module]) -> Chip:
        return cls(model, [(layer, [c.conductance_matrix.clone() for c in layer.crossbars], layer.transform_output)
                           for layer in layers])

    def restore(self) -> nn.Module:
        """The model as it was programmed: any earlier deployment's faults, aging and re-tuning undone."""
        for layer, conductances, transform in self.fresh:
            for crossbar, g in zip(layer.crossbars, conductances):
                crossbar.conductance_matrix = g.clone()
            layer.transform_output = transform
        return self.model


CHIPS_KEPT = 3
"""Chips kept per worker: the selection rules pick at most three checkpoints of a training (about 120 MB each
for the default CNN, most of it memtorch's device objects)."""

_kept: OrderedDict[tuple[str, Any], Chip] = OrderedDict()


def programmed(network: nn.Module, settings: Any, program: Callable[[nn.Module], Chip]) -> nn.Module:
    """The fresh chip for ``network`` under ``settings`` (hashable): a kept one restored, or ``program(network)``."""
    key = (network_fingerprint(network), settings)
    if key not in _kept:
        while len(_kept) >= CHIPS_KEPT:
            _kept.popitem(last=False)  # the oldest chip's devices go before the new ones are built
        _kept[key] = program(network)
    _kept.move_to_end(key)
    return _kept[key].restore()


def without_devices(model: nn.Module, layers: list[nn.Module]) -> nn.Module:
    """A copy of ``model`` that keeps only conductances: what inference reads, without the device objects.

    The devices (hundreds of MB for the default CNN) stay with the cached chip,
    whose non-idealities need them; the copy is what a deployment returns.
    """
    crossbars = [crossbar for layer in layers for crossbar in layer.crossbars]
    devices = [crossbar.devices for crossbar in crossbars]
    for crossbar in crossbars:
        crossbar.devices = None
    try:
        return copy.deepcopy(model)
    finally:
        for crossbar, held in zip(crossbars, devices):
            crossbar.devices = held
