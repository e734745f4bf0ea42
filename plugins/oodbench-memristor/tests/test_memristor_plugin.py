"""The targets as plugins: registered from their distribution, settings checked, backbones declared (no memtorch needed)."""

import json

import pytest
from oodbench_memristor.aging import AgingTarget
from oodbench_memristor.conversion import DEVICE_DEFAULTS, Device
from oodbench_memristor.faults import FaultsTarget
from oodbench_memristor.ideal import MemristorTarget
from oodbench_memristor.states import StatesTarget

from oodbench.cli import main
from oodbench.matrix import Overrides, expand, load_matrix
from oodbench.plugins import get_plugins

TARGETS = {t.name: t for t in (MemristorTarget, FaultsTarget, AgingTarget, StatesTarget)}


def test_the_four_targets_come_from_the_distribution(capsys):
    assert main(["list", "targets", "--json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    for name, target in TARGETS.items():
        assert listed[name]["dist"] == "oodbench-memristor"
        assert listed[name]["defaults"] == json.loads(json.dumps(target.defaults))
        assert DEVICE_DEFAULTS.items() <= target.defaults.items()


def test_cnn_and_mlp_convert_and_other_backbones_are_skipped_with_the_reason():
    target = MemristorTarget()
    assert target.supports("cnn") and target.supports("mlp")
    assert not target.supports("snn")
    if "snn" not in get_plugins().registry("backbones"):
        pytest.skip("oodbench-snn is not installed: no unsupported backbone to cross with")
    cells = expand(load_matrix("quick"), get_plugins(),
                   Overrides(filters={"backbones": ["snn"], "targets": list(TARGETS), "algorithms": ["erm"]}))
    assert {c.target for c in cells} == set(TARGETS)
    assert all(c.skip_reason == f"target {c.target} does not support backbone snn" for c in cells)


def test_set_reaches_each_targets_settings():
    cells = expand(load_matrix("quick"), get_plugins(),
                   Overrides(filters={"backbones": ["cnn"], "targets": ["memristor_faults", "memristor_states"],
                                      "algorithms": ["erm"]},
                             sets=[("memristor_faults.lrs_proportion", 0.05), ("adc_bits", 6)]))
    settings = {c.target: c.target_hparams for c in cells}
    assert settings["memristor_faults"]["lrs_proportion"] == 0.05
    assert settings["memristor_faults"]["adc_bits"] == settings["memristor_states"]["adc_bits"] == 6
    assert settings["memristor_states"]["conductance_states"] == 5


@pytest.mark.parametrize(("setting", "message"), [
    ({"quant_method": "tanh"}, "quant_method must be one of linear, log"),
    ({"adc_bits": 1}, "adc_bits must be 0"),
    ({"tile_rows": 0}, "tile_rows and tile_cols"),
    ({"r_on": 2000.0}, "r_on < r_off"),
    ({"layers": "conv1d"}, "layers must list"),
    ({"adc_overflow_rate": 1.5}, "adc_overflow_rate"),
])
def test_a_bad_device_setting_is_named(setting, message):
    with pytest.raises(ValueError, match=message):
        Device.from_hparams(setting)


@pytest.mark.parametrize(("target", "setting", "message"), [
    (FaultsTarget, {"lrs_proportion": 1.5}, "lrs_proportion must be in"),
    (AgingTarget, {"endurance_mode": "slow"}, "endurance_mode must be one of sudden, gradual"),
    (AgingTarget, {"p_lrs": [1.0, 0.0]}, "p_lrs must be four numbers"),
    (AgingTarget, {"retention_time": 0.5}, "retention_initial_time <= retention_time"),
    (AgingTarget, {"drift_std": -0.1}, r"drift_std must be in \[0, 1\]"),
    (StatesTarget, {"conductance_states": 1}, "conductance_states must be an integer of at least 2"),
])
def test_a_bad_nonideality_setting_fails_before_any_conversion(target, setting, message):
    with pytest.raises(ValueError, match=message):
        target(**setting).deploy(None, None, seed=0)


def test_device_defaults_turn_into_the_stated_device():
    device = Device.from_hparams({})
    assert device.tile_shape == (128, 128) and device.adc_bits == 8 and device.quant_method == "linear"
    assert device.max_input_voltage is None  # 0 V: inputs unscaled
    off = Device.from_hparams({"tile_rows": 0, "tile_cols": 0, "adc_bits": 0, "max_input_voltage": 0.3})
    assert off.tile_shape is None and off.adc_bits is None and off.quant_method is None
    assert off.max_input_voltage == 0.3
