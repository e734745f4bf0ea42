"""What each target does to the devices, and what an ideal device preserves (real memtorch, small tiles)."""

import math

import numpy as np
import pytest
import torch
from memristor_toys import SHAPE, SMALL_TILES, bars, conductances, trained_cnn
from torch import nn

from oodbench_memristor.aging import AgingTarget
from oodbench_memristor.conversion import Device, convert, memtorch_layers
from oodbench_memristor.faults import FaultsTarget
from oodbench_memristor.ideal import MemristorTarget
from oodbench_memristor.programmed import CHIPS_KEPT
from oodbench_memristor.states import StatesTarget

from oodbench.builtin.cnn import CNN

G_MIN, G_MAX = np.float32(1 / 1000), np.float32(1 / 50)  # VTEAM's r_off and r_on


@pytest.fixture(scope="module")
def network() -> CNN:
    torch.manual_seed(0)
    return CNN(SHAPE, 2, width=4, hidden=16).eval()


@pytest.fixture(scope="module")
def ideal(network) -> list[torch.Tensor]:
    return conductances(MemristorTarget(**SMALL_TILES).deploy(network, None, seed=0))


@pytest.fixture(scope="module")
def trained() -> CNN:
    return trained_cnn()


def test_an_ideal_device_keeps_the_float_predictions(trained):
    """Tolerance: with the default 8-bit ADCs, every prediction and logits within 5 % of their range; without
    ADCs the crossbar is the float layer up to float32 rounding and tune_'s regression (1e-4)."""
    x, y = bars(256, seed=99)
    with torch.no_grad():
        reference = trained(x)
        assert (reference.argmax(1) == y).float().mean() > 0.95  # the toy network has learnt its task
        with_adc = MemristorTarget(**SMALL_TILES).deploy(trained, None, seed=0)(x)
        without_adc = MemristorTarget(**SMALL_TILES, adc_bits=0).deploy(trained, None, seed=0)(x)
    scale = reference.abs().max()
    assert torch.equal(with_adc.argmax(1), reference.argmax(1))
    assert (with_adc - reference).abs().max() <= 0.05 * scale
    assert (without_adc - reference).abs().max() <= 1e-4 * scale
    assert not torch.equal(with_adc, without_adc)


def test_conversion_leaves_the_float_network_alone(network):
    before = {k: v.clone() for k, v in network.state_dict().items()}
    MemristorTarget(**SMALL_TILES).deploy(network, None, seed=0)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_ideal_conductances_map_the_weights_into_the_device_range(ideal):
    for g in ideal:
        assert G_MIN <= g.min() and g.max() <= G_MAX


def test_faults_stick_exactly_the_devices_memtorchs_seeded_draw_picks(network, ideal):
    """memtorch picks HRS then LRS indices per crossbar from NumPy's global RNG, which the cell's seed seeds."""
    lrs, hrs = 0.25, 0.10
    faulty = conductances(FaultsTarget(**SMALL_TILES, lrs_proportion=lrs, hrs_proportion=hrs).deploy(network, None, seed=5))
    draws = np.random.RandomState(5)
    for before, after in zip(ideal, faulty):
        n = before.numel()
        expected = before.reshape(-1).clone()
        expected[draws.choice(np.arange(n), replace=False, size=int(n * hrs))] = float(G_MIN)
        expected[draws.choice(np.arange(n), replace=False, size=int(n * lrs))] = float(G_MAX)
        assert torch.equal(after.reshape(-1), expected)
        changed = after.reshape(-1) != before.reshape(-1)
        assert changed.float().mean() > 0.2  # mostly LRS: an ideal device rarely sits at G_MAX
        assert set(after.reshape(-1)[changed].tolist()) <= {float(G_MIN), float(G_MAX)}


def test_the_same_seed_gives_the_same_faulty_network(network):
    x = bars(32, seed=1)[0]
    first, second, other = (FaultsTarget(**SMALL_TILES).deploy(network, None, seed=s) for s in (3, 3, 4))
    assert all(torch.equal(a, b) for a, b in zip(conductances(first), conductances(second)))
    assert not all(torch.equal(a, b) for a, b in zip(conductances(first), conductances(other)))
    with torch.no_grad():
        assert torch.equal(first(x), second(x))


def test_a_deployment_does_not_depend_on_what_the_worker_deployed_before(network):
    """The programmed chip is kept between deployments (programmed.py): other draws, other targets and re-tuning
    in between must leave no trace, and a chip programmed afresh must give the same numbers."""
    x = bars(32, seed=1)[0]
    faults = FaultsTarget(**SMALL_TILES)

    def deployed() -> tuple[list[torch.Tensor], torch.Tensor]:
        model = faults.deploy(network, None, seed=5)
        with torch.no_grad():
            return conductances(model), model(x)

    first, first_out = deployed()
    FaultsTarget(**SMALL_TILES, retune=True).deploy(network, None, seed=6)  # re-fits every read-out
    AgingTarget(**SMALL_TILES).deploy(network, None, seed=0)
    again, again_out = deployed()
    for other in range(CHIPS_KEPT):  # as many other networks as chips are kept: this one's chip goes
        torch.manual_seed(100 + other)
        MemristorTarget(**SMALL_TILES).deploy(CNN(SHAPE, 2, width=4, hidden=16), None, seed=0)
    afresh, afresh_out = deployed()
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(first, again, afresh))
    assert torch.equal(first_out, again_out) and torch.equal(first_out, afresh_out)


def test_a_deployed_network_is_its_own_copy_without_device_objects(network):
    x = bars(16, seed=2)[0]
    one = FaultsTarget(**SMALL_TILES).deploy(network, None, seed=1)
    with torch.no_grad():
        before = one(x)
        FaultsTarget(**SMALL_TILES).deploy(network, None, seed=2)  # the next draw reuses the chip, not this copy
        assert torch.equal(one(x), before)
    assert all(crossbar.devices is None for _, layer in memtorch_layers(one) for crossbar in layer.crossbars)


def test_deploying_leaves_the_global_random_streams_where_they_were(network):
    np.random.seed(11)
    torch.manual_seed(11)
    expected = np.random.rand(), torch.rand(1)
    np.random.seed(11)
    torch.manual_seed(11)
    FaultsTarget(**SMALL_TILES).deploy(network, None, seed=0)
    assert (np.random.rand(), torch.rand(1)) == expected


def test_sudden_endurance_failure_then_drift_leaves_two_conductances(network, ideal):
    """Past the cycle threshold every device below 550 Ω (r_on + r_off / 2, memtorch's convergence point) goes
    to 100 Ω, the rest to 1 kΩ; 1000 s of drift at coefficient 0.1 then scales every conductance by 1000**-0.1."""
    aged = conductances(AgingTarget(**SMALL_TILES, drift_std=0.0).deploy(network, None, seed=0))
    drift = 1000.0 ** -0.1
    for before, after in zip(ideal, aged):
        lrs = 1 / before < 550
        assert lrs.any() and (~lrs).any()
        torch.testing.assert_close(after[lrs], torch.full_like(after[lrs], drift / 100))
        torch.testing.assert_close(after[~lrs], torch.full_like(after[~lrs], drift / 1000))


def test_retention_alone_scales_every_conductance(network, ideal):
    """Below the endurance threshold (1 cycle for p = [1, 0, 0, 0]) only the drift acts."""
    aged = conductances(AgingTarget(**SMALL_TILES, endurance_cycles=0.5, retention_time=1e4,
                                    drift_std=0.0).deploy(network, None, 0))
    for before, after in zip(ideal, aged):
        torch.testing.assert_close(after, before * 1e4 ** -0.1)


def test_without_spread_the_drift_is_memtorchs_own_model(network, ideal):
    """memtorch's endurance then its retention model, as this target ran them before it drew exponents."""
    from memtorch.bh.nonideality import endurance_retention_models as models
    from memtorch.bh.nonideality.NonIdeality import NonIdeality, apply_nonidealities

    def memtorchs(model: nn.Module) -> None:
        apply_nonidealities(
            model, non_idealities=[NonIdeality.Endurance, NonIdeality.Retention], x=0.5,
            endurance_model=models.model_endurance_retention,
            endurance_model_kwargs={"operation_mode": models.OperationMode.sudden, "p_lrs": [1.0, 0.0, 0.0, 0.0],
                                    "stable_resistance_lrs": 100.0, "p_hrs": [1.0, 0.0, 0.0, 0.0],
                                    "stable_resistance_hrs": 1000.0, "cell_size": 10.0, "temperature": 350.0},
            time=3600.0, retention_model=models.model_conductance_drift,
            retention_model_kwargs={"initial_time": 1.0, "drift_coefficient": 0.1})

    theirs = conductances(convert(network, Device.from_hparams(SMALL_TILES), seed=0, nonidealities=memtorchs))
    ours = conductances(AgingTarget(**SMALL_TILES, endurance_cycles=0.5, retention_time=3600.0,
                                    drift_std=0.0).deploy(network, None, 0))
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours))


def _exponents(network, ideal, seed, time, **hparams) -> torch.Tensor:
    """Each device's drift exponent, read back from its conductance: log(G_t / G_0) / -log(t / t0)."""
    aged = conductances(AgingTarget(**SMALL_TILES, endurance_cycles=0.5, retention_time=time,
                                    **hparams).deploy(network, None, seed))
    return torch.cat([(torch.log(a / b) / -math.log(time)).reshape(-1) for a, b in zip(aged, ideal)])


def test_each_device_draws_its_own_drift_exponent_and_keeps_it_over_time(network, ideal):
    """A chip read after an hour and after a year is the same chip: the same exponent per device; another seed
    is another chip. Over the toy CNN's 3 584 devices the exponents have the declared mean and spread."""
    hour, year = _exponents(network, ideal, 7, 3600.0), _exponents(network, ideal, 7, 3.15e7)
    other = _exponents(network, ideal, 8, 3600.0)
    torch.testing.assert_close(hour, year, rtol=0, atol=1e-4)
    assert not torch.allclose(hour, other, atol=1e-3)
    assert abs(hour.mean().item() - 0.1) < 0.002 and abs(hour.std().item() - 0.02) < 0.002
    assert hour.numel() > 3_000


def test_drift_compensation_undoes_a_uniform_drift(network):
    """Without an ADC (which rounds a rescaled current differently) and with one exponent for all devices,
    the compensated read-out after a year is the read-out at programming time; uncompensated, it is not."""
    x = bars(32, seed=3)[0]
    plain = dict(SMALL_TILES, adc_bits=0, endurance_cycles=0.5, drift_std=0.0)
    with torch.no_grad():
        fresh = AgingTarget(**plain, retention_time=1.0).deploy(network, None, 0)(x)
        compensated = AgingTarget(**plain, retention_time=3.15e7, drift_compensation=True).deploy(network, None, 0)(x)
        drifted = AgingTarget(**plain, retention_time=3.15e7).deploy(network, None, 0)(x)
    torch.testing.assert_close(compensated, fresh, rtol=1e-4, atol=1e-5)
    assert (drifted - fresh).abs().max() > 100 * (compensated - fresh).abs().max()


@pytest.mark.parametrize("states", [2, 5])
def test_finite_states_leave_at_most_that_many_levels(network, ideal, states):
    quantised = conductances(StatesTarget(**SMALL_TILES, conductance_states=states).deploy(network, None, seed=0))
    step = (G_MAX - G_MIN) / (states - 1)
    for before, after in zip(ideal, quantised):
        levels = after.unique()
        assert len(levels) <= states
        assert G_MIN - 1e-7 <= levels.min() and levels.max() <= G_MAX + 1e-7
        assert (after - before).abs().max() <= step / 2 + 1e-6
    assert any(len(g.unique()) > states for g in ideal)  # so the quantisation did something


def test_memtorchs_own_finite_states_changes_nothing(network, ideal):
    """The 1.1.6 defect the states target works around; if memtorch fixes it, this fails and the fix can go."""
    from memtorch.bh.nonideality.NonIdeality import NonIdeality, apply_nonidealities

    def memtorchs(model: nn.Module) -> None:
        apply_nonidealities(model, non_idealities=[NonIdeality.FiniteConductanceStates], conductance_states=2)

    model = convert(network, Device.from_hparams(SMALL_TILES), seed=0, nonidealities=memtorchs)
    assert all(torch.equal(a, b) for a, b in zip(ideal, conductances(model)))


def test_only_the_layers_named_are_converted(network):
    model = MemristorTarget(**SMALL_TILES, layers="conv2d").deploy(network, None, seed=0)
    assert [type(layer).__name__ for _, layer in memtorch_layers(model)] == ["Conv2d", "Conv2d"]


def test_a_subclassed_layer_is_refused_by_name():
    class Scaled(nn.Linear):
        pass

    network = nn.Sequential(nn.Flatten(), Scaled(4, 2))
    with pytest.raises(TypeError, match="layer 1 is a Scaled"):
        MemristorTarget(**SMALL_TILES).deploy(network, None, seed=0)


def _effective(model: nn.Module, n_in: int) -> torch.Tensor:
    """A one-layer network's weight as its crossbar holds it: the read of each unit input, bias removed."""
    with torch.no_grad():
        eye = torch.eye(n_in)
        return (model(eye) - model(torch.zeros(1, n_in))).T


def test_hardware_aware_faults_hold_weights_as_memtorchs_stuck_devices_do():
    """The training-time model against memtorch's DeviceFaults on one linear layer (no tiles, no ADC, so the
    crossbar read is the weight): every weight either kept, zeroed or pushed to +-max (alone or minus its
    value), and the share kept the same, (1 - hrs)(1 - lrs)^2 = 0.506 at the defaults."""
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    network = nn.Sequential(layer).eval()
    target = FaultsTarget(tile_rows=0, tile_cols=0, adc_bits=0)
    w, top = layer.weight.detach(), layer.weight.detach().abs().max()
    theirs = _effective(target.deploy(network, None, seed=3), 64)
    ours = target.perturb_weight(layer, w, torch.Generator().manual_seed(3))
    outcomes = torch.stack([w, torch.zeros_like(w), top.expand_as(w), -top.expand_as(w), w - top * w.sign()])
    for effective in (theirs, ours):
        nearest = (effective.unsqueeze(0) - outcomes).abs().amin(0)
        assert nearest.max() < 1e-3 * top
    kept = [((effective - w).abs() < 1e-3 * top).float().mean().item() for effective in (theirs, ours)]
    assert abs(kept[0] - 0.506) < 0.03 and abs(kept[1] - 0.506) < 0.03
    assert torch.equal(layer.weight.detach(), w)  # the weight it was given is left alone
    assert FaultsTarget().perturb_weight(nn.BatchNorm1d(4), torch.ones(4), torch.Generator()) is None
