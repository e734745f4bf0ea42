"""The ``memristor`` target: the trained network on ideal memristive crossbars.

Ideal means every device takes exactly the conductance its weight maps to;
what remains of the hardware is the mapping onto [1/r_off, 1/r_on], the 1T1R
tiles, the input voltage encoding and the ADCs. The non-ideal targets extend
this class and only override ``nonidealities()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import DEVICE_DEFAULTS, Device, convert


class OnCrossbars(nn.Module):
    """The converted network; memtorch-cpu computes on the CPU, so inputs go there and outputs come back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.cpu()).to(x.device)


class MemristorTarget:
    """Ideal memristive crossbars (memtorch): 1T1R VTEAM devices, 128x128 tiles, 8-bit ADCs."""

    name: ClassVar[str] = "memristor"
    defaults: ClassVar[dict[str, Any]] = dict(DEVICE_DEFAULTS)
    backbones: ClassVar[frozenset[str]] = frozenset({"cnn", "mlp"})
    """Backbones built only from exact nn.Conv2d/nn.Linear layers and stateless activations, which memtorch converts."""

    def __init__(self, **hparams: Any) -> None:
        self.hparams = {**self.defaults, **hparams}

    def supports(self, backbone_name: str) -> bool:
        return backbone_name in self.backbones

    def deploy(self, network: nn.Module, calibration: torch.Tensor, seed: int) -> nn.Module:
        """``network`` converted, tuned and (in subclasses) made non-ideal, random draws seeded by ``seed``.

        ``calibration`` is unused: memtorch's ``tune_()`` fits each layer on random inputs.
        """
        model = convert(network, Device.from_hparams(self.hparams), seed, self.nonidealities(),
                        retune=bool(self.hparams.get("retune", False)))
        return OnCrossbars(model)

    def nonidealities(self) -> Callable[[nn.Module], None] | None:
        """A function applying this target's non-idealities to a patched, tuned model; the ideal target has none."""


@hookimpl
def oodbench_register_targets(register):
    register(MemristorTarget)
