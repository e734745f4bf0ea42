"""The ``memristor_faults`` target: devices stuck at their low or high resistance state.

memtorch's ``DeviceFaults`` picks, in each crossbar (tile padding included),
``int(n * hrs_proportion)`` devices to stick at 1/r_off and then
``int(n * lrs_proportion)`` to stick at 1/r_on, from NumPy's global RNG,
which the deployment seeds with its draw's seed. Devices that never
electroformed also sit at the high resistance state, so
``electroform_proportion`` adds to ``hrs_proportion``. Defaults are memtorch's
tutorial's (25 % LRS, 10 % HRS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import DEVICE_DEFAULTS, Device, import_memtorch
from oodbench_memristor.ideal import MemristorTarget

FAULT_DEFAULTS: dict[str, Any] = {
    "lrs_proportion": 0.25,
    "hrs_proportion": 0.10,
    "electroform_proportion": 0.0,
    "retune": False,
    "draws": 1,
}
"""``draws``: chips drawn per trained network, each with its own seeded set of stuck devices (oodbench.draws)."""


class FaultsTarget(MemristorTarget):
    """memristor, then a seeded share of devices stuck at LRS or HRS (memtorch DeviceFaults)."""

    name: ClassVar[str] = "memristor_faults"
    defaults: ClassVar[dict[str, Any]] = DEVICE_DEFAULTS | FAULT_DEFAULTS

    def nonidealities(self) -> Callable[[nn.Module], None]:
        proportions = {k: float(self.hparams[k]) for k in ("lrs_proportion", "hrs_proportion", "electroform_proportion")}
        for key, value in proportions.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{key} must be in [0, 1], got {value}")
        if proportions["hrs_proportion"] + proportions["electroform_proportion"] > 1:
            raise ValueError("hrs_proportion + electroform_proportion must be at most 1")

        def apply(model: nn.Module) -> None:
            import_memtorch()
            from memtorch.bh.nonideality.NonIdeality import (
                NonIdeality,
                apply_nonidealities,
            )

            apply_nonidealities(model, non_idealities=[NonIdeality.DeviceFaults], **proportions)

        return apply

    def perturb_weight(self, layer: nn.Module, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """``weight`` as a chip with a fresh random set of stuck devices holds it, for hardware-aware training.

        memtorch maps a weight onto two devices (``naive_map``, double column):
        the positive part onto one, the negative onto the other, each as a
        fraction of the layer's largest magnitude; the calibration reads their
        difference back in weight units. A device stuck at HRS reads as 0, one
        stuck at LRS as the full magnitude. Each device here fails on its own
        coin (memtorch draws exact counts per crossbar; tile padding, whose
        stuck devices move only the ADC's range, is not modelled).
        """
        if type(layer) not in Device.from_hparams(self.hparams).layers:
            return None
        h = self.hparams
        hrs = float(h["hrs_proportion"]) + float(h["electroform_proportion"])
        top = weight.abs().max()
        parts = []
        for part in (weight.clamp(min=0), (-weight).clamp(min=0)):
            part = torch.where(torch.rand(part.shape, generator=generator) < hrs, 0.0, part)
            parts.append(torch.where(torch.rand(part.shape, generator=generator) < float(h["lrs_proportion"]), top, part))
        return parts[0] - parts[1]


@hookimpl
def oodbench_register_targets(register):
    register(FaultsTarget)
