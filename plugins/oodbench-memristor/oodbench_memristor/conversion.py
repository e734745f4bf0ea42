"""A trained float network -> the same network on memtorch crossbars, tuned, with non-idealities.

The order is memtorch's tutorial's and a deployed chip's: map the weights
onto fresh devices (``patch_model``), calibrate each layer's read-out on
those fresh devices (``tune_()``, a linear fit against the float layer), then
let the devices fail or age; the calibration is not redone unless ``retune``
is set (a re-tune partly compensates the non-idealities). The fresh chip is
kept per worker (``programmed``); the non-idealities draw from the
deployment's seed (``seeding.seeded``).

A patched model holds a lambda and hundreds of thousands of device objects:
it is never pickled; a deployment returns a copy without the devices.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from oodbench_memristor.crossbar import QUANT_METHODS, accelerate
from oodbench_memristor.programmed import CALIBRATION_SEED, Chip, programmed, without_devices
from oodbench_memristor.seeding import seeded

DEVICE_DEFAULTS: dict[str, Any] = {
    "r_on": 50.0,
    "r_off": 1000.0,
    "tile_rows": 128,
    "tile_cols": 128,
    "adc_bits": 8,
    "adc_overflow_rate": 0.0,
    "quant_method": "linear",
    "max_input_voltage": 0.0,
    "layers": "conv2d,linear",
}
"""The ideal device: VTEAM devices (r_on 50 Ω, r_off 1 kΩ) written directly (no programming pulses) in 1T1R
128x128 tiles, read through 8-bit linear ADCs, every Conv2d and Linear layer on crossbars, as in memtorch's
tutorial, except that inputs are applied unscaled (``max_input_voltage`` 0). The tutorial's 0.3 V makes
memtorch's ``naive_scale`` shrink each sample (Conv2d) or each batch (Linear) whose peak exceeds 0.3 by a
factor nothing undoes at the output, so predictions would depend on the evaluation batch; in this 1T1R model
the voltage level has no other effect."""

LAYER_TYPES = {"conv2d": nn.Conv2d, "linear": nn.Linear}

INSTALL_HINT = "memtorch is not installed: run plugins/oodbench-memristor/install-memtorch.sh (see docs/memristor.md)"


@dataclass(frozen=True)
class Device:
    """Validated crossbar settings; ``0`` turns tiles, the ADC or input scaling off."""

    r_on: float
    r_off: float
    tile_shape: tuple[int, int] | None
    adc_bits: int | None
    adc_overflow_rate: float
    quant_method: str | None
    max_input_voltage: float | None
    layers: tuple[type[nn.Module], ...]

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> Device:
        """The settings in ``hparams`` (missing keys take ``DEVICE_DEFAULTS``), or a ValueError naming the bad one."""
        h = DEVICE_DEFAULTS | {k: v for k, v in hparams.items() if k in DEVICE_DEFAULTS}
        if not 0 < h["r_on"] < h["r_off"]:
            raise ValueError(f"need 0 < r_on < r_off, got r_on={h['r_on']}, r_off={h['r_off']}")
        tiles = (h["tile_rows"], h["tile_cols"])
        if tiles != (0, 0) and min(tiles) < 1:
            raise ValueError(f"tile_rows and tile_cols must both be >= 1, or both 0 for no tiles; got {tiles}")
        if h["adc_bits"] != 0 and h["adc_bits"] < 2:
            raise ValueError(f"adc_bits must be 0 (no ADC) or at least 2, got {h['adc_bits']}")
        if h["quant_method"] not in QUANT_METHODS:
            raise ValueError(f"quant_method must be one of {', '.join(QUANT_METHODS)}, got {h['quant_method']!r}")
        if not 0 <= h["adc_overflow_rate"] <= 1:
            raise ValueError(f"adc_overflow_rate must be in [0, 1], got {h['adc_overflow_rate']}")
        if h["max_input_voltage"] < 0:
            raise ValueError(f"max_input_voltage must be >= 0 (0: inputs not scaled), got {h['max_input_voltage']}")
        names = [n.strip() for n in h["layers"].split(",") if n.strip()]
        if not names or any(n not in LAYER_TYPES for n in names):
            raise ValueError(f"layers must list some of {', '.join(LAYER_TYPES)}, got {h['layers']!r}")
        return cls(r_on=float(h["r_on"]), r_off=float(h["r_off"]), tile_shape=None if tiles == (0, 0) else tiles,
                   adc_bits=h["adc_bits"] or None, adc_overflow_rate=float(h["adc_overflow_rate"]),
                   quant_method=h["quant_method"] if h["adc_bits"] else None,
                   max_input_voltage=float(h["max_input_voltage"]) or None,
                   layers=tuple(LAYER_TYPES[n] for n in dict.fromkeys(names)))


def check_convertible(network: nn.Module, layers: tuple[type[nn.Module], ...]) -> None:
    """Refuse, with the layer's name, what memtorch or the batched path would mis-convert.

    memtorch's ``patch_model`` finds layers with ``isinstance`` but converts
    them by exact type, so a subclass of ``nn.Conv2d``/``nn.Linear`` crashes
    it; its ``Conv2d`` unfolds with the first kernel size and stride on both
    axes and ignores dilation and groups.
    """
    for name, module in network.named_modules():
        if isinstance(module, layers) and type(module) not in layers:
            raise TypeError(f"layer {name} is a {type(module).__name__}, a subclass memtorch cannot convert "
                             f"(it converts exact nn.Conv2d/nn.Linear only)")
        if type(module) is nn.Conv2d and nn.Conv2d in layers:
            square = module.kernel_size[0] == module.kernel_size[1] and module.stride[0] == module.stride[1]
            if not square or module.dilation != (1, 1) or module.groups != 1 or module.padding_mode != "zeros":
                raise ValueError(f"layer {name}: memtorch converts square, undilated, ungrouped, zero-padded "
                                 f"convolutions only, got {module}")


def memtorch_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every memristive layer in ``model``, in module order, each once."""
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "crossbars")]


def import_memtorch() -> ModuleType:
    """memtorch, imported on first use (it takes seconds and is optional), or a RuntimeError saying how to get it."""
    try:
        import memtorch
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from None
    return memtorch


def program(network: nn.Module, device: Device) -> Chip:
    """``network`` (left untouched) on fresh crossbars: patched, routed through the batched path and tuned."""
    memtorch = import_memtorch()
    from memtorch.map.Input import naive_scale
    from memtorch.map.Parameter import naive_map
    from memtorch.mn.Module import patch_model

    check_convertible(network, device.layers)
    with seeded(CALIBRATION_SEED), torch.no_grad():
        model = patch_model(
            copy.deepcopy(network).cpu().eval(),
            memristor_model=memtorch.bh.memristor.VTEAM,
            memristor_model_params={"time_series_resolution": 1e-10, "r_on": device.r_on, "r_off": device.r_off},
            module_parameters_to_patch=list(device.layers),
            mapping_routine=naive_map,
            transistor=True,
            programming_routine=None,
            scheme=memtorch.bh.Scheme.DoubleColumn,
            tile_shape=device.tile_shape,
            max_input_voltage=device.max_input_voltage,
            scaling_routine=naive_scale,
            ADC_resolution=device.adc_bits,
            ADC_overflow_rate=device.adc_overflow_rate,
            quant_method=device.quant_method,
            verbose=False,
        )
        if not accelerate(model):
            raise ValueError(f"the network has no {' or '.join(t.__name__ for t in device.layers)} layer to convert")
        model.tune_()
    return Chip.of(model, [layer for _, layer in memtorch_layers(model)])


def convert(network: nn.Module, device: Device, seed: int,
            nonidealities: Callable[[nn.Module], None] | None = None, retune: bool = False) -> nn.Module:
    """``network`` (left untouched) on crossbars: the programmed chip with ``nonidealities`` applied, drawn from
    ``seed``, and re-tuned if ``retune``; a copy that holds conductances only."""
    model = programmed(network, device, lambda net: program(net, device))
    with seeded(seed), torch.no_grad():
        if nonidealities is not None:
            nonidealities(model)
            if retune:
                model.tune_()
    return without_devices(model, [layer for _, layer in memtorch_layers(model)]).eval()
