"""The ``memristor_faults`` target: devices stuck at their low or high resistance state.

memtorch's ``DeviceFaults`` picks, in each crossbar (tile padding included),
``int(n * hrs_proportion)`` devices to stick at 1/r_off and then
``int(n * lrs_proportion)`` to stick at 1/r_on, from NumPy's global RNG,
which the conversion seeds with the cell's seed. Devices that never
electroformed also sit at the high resistance state, so
``electroform_proportion`` adds to ``hrs_proportion``. Defaults are memtorch's
tutorial's (25 % LRS, 10 % HRS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import DEVICE_DEFAULTS, import_memtorch
from oodbench_memristor.ideal import MemristorTarget

FAULT_DEFAULTS: dict[str, Any] = {
    "lrs_proportion": 0.25,
    "hrs_proportion": 0.10,
    "electroform_proportion": 0.0,
    "retune": False,
}


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


@hookimpl
def oodbench_register_targets(register):
    register(FaultsTarget)
