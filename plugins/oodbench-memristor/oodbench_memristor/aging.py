"""The ``memristor_aging`` target: endurance (SET-RESET cycles), then retention (time since programming).

Endurance is memtorch's empirical metal-oxide RRAM model (Lammie et al.
2021): past its cycle threshold, ``sudden`` failure sets every device below
the convergence resistance to ``stable_resistance_lrs`` and every device above
it to ``stable_resistance_hrs`` (``gradual`` drifts them along a power law
instead). Retention is memtorch's conductance drift (Boybat et al. 2018):
every conductance times ``(retention_time / retention_initial_time) **
-drift_coefficient``. Both are deterministic. Defaults are memtorch's
tutorial's: 10 000 cycles, sudden failure to 100 Ω / 1 kΩ at 350 K, then
1 000 s of drift with coefficient 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from oodbench import hookimpl
from oodbench_memristor.conversion import DEVICE_DEFAULTS, import_memtorch
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
    "retune": False,
}
MODES = ("sudden", "gradual")


class AgingTarget(MemristorTarget):
    """memristor, then worn by SET-RESET cycles (endurance) and drifted over time (retention)."""

    name: ClassVar[str] = "memristor_aging"
    defaults: ClassVar[dict[str, Any]] = DEVICE_DEFAULTS | AGING_DEFAULTS

    def nonidealities(self) -> Callable[[nn.Module], None]:
        h = self.hparams
        if h["endurance_mode"] not in MODES:
            raise ValueError(f"endurance_mode must be one of {', '.join(MODES)}, got {h['endurance_mode']!r}")
        for key in ("p_lrs", "p_hrs"):
            if len(h[key]) != 4 or not all(isinstance(p, (int, float)) for p in h[key]):
                raise ValueError(f"{key} must be four numbers p_0..p_3, got {h[key]!r}")
        if not 0 < h["retention_initial_time"] < h["retention_time"]:
            raise ValueError(f"need 0 < retention_initial_time < retention_time, got "
                             f"{h['retention_initial_time']} and {h['retention_time']}")
        if not 0 <= h["drift_coefficient"] <= 1:
            raise ValueError(f"drift_coefficient must be in [0, 1], got {h['drift_coefficient']}")

        def apply(model: nn.Module) -> None:
            import_memtorch()
            from memtorch.bh.nonideality import endurance_retention_models as models
            from memtorch.bh.nonideality.NonIdeality import (
                NonIdeality,
                apply_nonidealities,
            )

            apply_nonidealities(
                model,
                non_idealities=[NonIdeality.Endurance, NonIdeality.Retention],
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
                time=float(h["retention_time"]),
                retention_model=models.model_conductance_drift,
                retention_model_kwargs={"initial_time": float(h["retention_initial_time"]),
                                        "drift_coefficient": float(h["drift_coefficient"])},
            )

        return apply


@hookimpl
def oodbench_register_targets(register):
    register(AgingTarget)
