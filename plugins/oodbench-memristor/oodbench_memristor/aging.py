"""The ``memristor_aging`` target: endurance (SET-RESET cycles), then retention (time since programming).

Endurance is memtorch's empirical metal-oxide RRAM model (Lammie et al.
2021): past its cycle threshold, ``sudden`` failure sets every device below
the convergence resistance to ``stable_resistance_lrs`` and every device above
it to ``stable_resistance_hrs`` (``gradual`` drifts them along a power law
instead); it is deterministic. Retention is conductance drift (Boybat et al.
2018), every conductance times ``(retention_time / retention_initial_time) **
-nu``, as memtorch's ``model_conductance_drift`` with one ``nu`` for all; here
each device draws its own ``nu`` from N(``drift_coefficient``,
``drift_std``^2) (clipped at 0), so chips differ and drift does not only
rescale (``drift_std = 0`` is memtorch's model exactly). With
``drift_compensation`` each layer's digital read-out is rescaled by the ratio
of an all-ones read before and after the drift (the global drift
compensation of IBM's aihwkit). Defaults are memtorch's tutorial's (10 000
cycles, sudden failure to 100 Ω / 1 kΩ at 350 K, 1 000 s of drift at 0.1)
plus a spread of 0.02 in ``nu`` (an assumption of this plugin, the order of the
device-to-device spread IBM's PCM model uses) and no compensation. A time
axis is a sweep of ``retention_time``: every time reads the same drawn chip
(``docs/memristor.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import DEVICE_DEFAULTS, import_memtorch, memtorch_layers
from oodbench_memristor.crossbar import conductance
from oodbench_memristor.ideal import MemristorTarget

AGING_DEFAULTS: dict[str, Any] = {
    "endurance_cycles": 1e4,
    "endurance_mode": "sudden",
    "p_lrs": [1.0, 0.0, 0.0, 0.0],
    "p_hrs": [1.0, 0.0, 0.0, 0.0],
    "stable_resistance_lrs": 100.0,
    "stable_resistance_hrs": 1000.0,
    "cell_size": 10.0,
    "temperature": 350.0,
    "retention_time": 1e3,
    "retention_initial_time": 1.0,
    "drift_coefficient": 0.1,
    "drift_std": 0.02,
    "drift_compensation": False,
    "retune": False,
    "draws": 1,
}
MODES = ("sudden", "gradual")


class AgingTarget(MemristorTarget):
    """memristor, then worn by SET-RESET cycles (endurance) and drifted over time (retention)."""

    name: ClassVar[str] = "memristor_aging"
    defaults: ClassVar[dict[str, Any]] = DEVICE_DEFAULTS | AGING_DEFAULTS
    time_key: ClassVar[str] = "retention_time"
    """The hyperparameter that is the time since programming, in seconds: reports draw a sweep of it as a curve."""

    def nonidealities(self) -> Callable[[nn.Module], None]:
        h = self.hparams
        if h["endurance_mode"] not in MODES:
            raise ValueError(f"endurance_mode must be one of {', '.join(MODES)}, got {h['endurance_mode']!r}")
        for key in ("p_lrs", "p_hrs"):
            if len(h[key]) != 4 or not all(isinstance(p, (int, float)) for p in h[key]):
                raise ValueError(f"{key} must be four numbers p_0..p_3, got {h[key]!r}")
        if not 0 < h["retention_initial_time"] <= h["retention_time"]:
            raise ValueError(f"need 0 < retention_initial_time <= retention_time, got "
                             f"{h['retention_initial_time']} and {h['retention_time']}")
        if not 0 <= h["drift_coefficient"] <= 1:
            raise ValueError(f"drift_coefficient must be in [0, 1], got {h['drift_coefficient']}")
        if not 0 <= h["drift_std"] <= 1:
            raise ValueError(f"drift_std must be in [0, 1], got {h['drift_std']}")
        elapsed = float(h["retention_time"]) / float(h["retention_initial_time"])

        def apply(model: nn.Module) -> None:
            import_memtorch()
            from memtorch.bh.nonideality import endurance_retention_models as models
            from memtorch.bh.nonideality.NonIdeality import (
                NonIdeality,
                apply_nonidealities,
            )

            apply_nonidealities(
                model,
                non_idealities=[NonIdeality.Endurance],
                x=float(h["endurance_cycles"]),
                endurance_model=models.model_endurance_retention,
                endurance_model_kwargs={
                    "operation_mode": models.OperationMode[h["endurance_mode"]],
                    "p_lrs": [float(p) for p in h["p_lrs"]],
                    "stable_resistance_lrs": float(h["stable_resistance_lrs"]),
                    "p_hrs": [float(p) for p in h["p_hrs"]],
                    "stable_resistance_hrs": float(h["stable_resistance_hrs"]),
                    "cell_size": float(h["cell_size"]),
                    "temperature": float(h["temperature"]),
                },
            )
            drift(model, elapsed, float(h["drift_coefficient"]), float(h["drift_std"]), bool(h["drift_compensation"]))

        return apply


def drift(model: nn.Module, elapsed: float, nu: float, nu_std: float, compensate: bool) -> None:
    """Every device's conductance times ``elapsed ** -nu_d``, ``nu_d`` ~ N(nu, nu_std^2) per device, drawn from
    torch's global RNG (the deployment seeds it); with ``compensate``, each layer's read-out scaled back by
    the ratio of an all-ones read before and after."""
    for _, layer in memtorch_layers(model):
        before = conductance(layer)
        for crossbar in layer.crossbars:
            g = crossbar.conductance_matrix
            if nu_std == 0:
                crossbar.conductance_matrix = g * elapsed ** -nu  # memtorch's model_conductance_drift, to the bit
            else:
                exponent = (nu + nu_std * torch.randn_like(g)).clamp_min(0)
                crossbar.conductance_matrix = g * torch.pow(torch.tensor(elapsed, dtype=g.dtype), -exponent)
        if compensate:
            scale = reference_read(before) / reference_read(conductance(layer))
            layer.transform_output = _scaled(layer.transform_output, scale)


def reference_read(g: torch.Tensor) -> torch.Tensor:
    """The summed magnitude of every column's current when all inputs are 1 V: the drift monitor's read."""
    return g.sum(-2).abs().sum()


def _scaled(transform: Callable[[torch.Tensor], torch.Tensor], scale: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda currents: transform(currents * scale)


@hookimpl
def oodbench_register_targets(register):
    register(AgingTarget)
