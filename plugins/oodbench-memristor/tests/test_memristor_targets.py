"""What each target does to the devices, and what an ideal device preserves (real memtorch, small tiles)."""

import numpy as np
import pytest
import torch
from memristor_toys import SHAPE, SMALL_TILES, bars, conductances, trained_cnn
from torch import nn

from oodbench_memristor.aging import AgingTarget
from oodbench_memristor.conversion import Device, convert, memtorch_layers
from oodbench_memristor.faults import FaultsTarget
from oodbench_memristor.ideal import MemristorTarget
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
    aged = conductances(AgingTarget(**SMALL_TILES).deploy(network, None, seed=0))
    drift = 1000.0 ** -0.1
    for before, after in zip(ideal, aged):
        lrs = 1 / before < 550
        assert lrs.any() and (~lrs).any()
        torch.testing.assert_close(after[lrs], torch.full_like(after[lrs], drift / 100))
        torch.testing.assert_close(after[~lrs], torch.full_like(after[~lrs], drift / 1000))


def test_retention_alone_scales_every_conductance(network, ideal):
    """Below the endurance threshold (1 cycle for p = [1, 0, 0, 0]) only the drift acts."""
    aged = conductances(AgingTarget(**SMALL_TILES, endurance_cycles=0.5, retention_time=1e4).deploy(network, None, 0))
    for before, after in zip(ideal, aged):
        torch.testing.assert_close(after, before * 1e4 ** -0.1)


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
