"""The ``snn`` backbone: rates as features, no state across batches or networks, gradients to every layer."""

import copy

import pytest
import torch
import torch.nn.functional as F
from oodbench_snn.lif import LIF
from oodbench_snn.snn import SNN
from snn_toys import SHAPE, images
from torch import nn


def snn(**hparams) -> SNN:
    torch.manual_seed(0)
    return SNN(SHAPE, 2, **{**SNN.defaults, **hparams})


def test_features_are_firing_rates_of_the_last_hidden_layer():
    model = snn(steps=3, hidden=7)
    features = model.featurizer(images(5, 1) * 4)
    assert features.shape == (5, 7) and model.n_features == 7
    assert torch.allclose(features * 3, (features * 3).round())  # spike counts out of T = 3
    assert 0 <= features.min() and features.max() <= 1 and 0 < features.mean() < 1  # some fire, not all
    assert model(images(5, 1)).shape == (5, 2)


def test_every_lif_layer_emits_binary_spikes():
    model = snn(encoding="rate")
    spikes = []
    for layer in model.featurizer:
        if isinstance(layer, LIF):
            layer.register_forward_hook(lambda module, args, out: spikes.append(out))
    model(images(6, 2) * 3)
    assert len(spikes) == 3
    assert all(set(s.unique().tolist()) == {0.0, 1.0} for s in spikes)


def test_the_featurizer_has_a_conv_feature_map_before_its_flatten():
    model = snn(steps=3, width=4)
    flatten = [i for i, layer in enumerate(model.featurizer) if isinstance(layer, nn.Flatten)]
    assert len(flatten) == 1
    feature_map = model.featurizer[:flatten[0]](images(2, 1))
    assert feature_map.shape == (2, 3 * 8, 2, 2)  # T x 2*width maps of 2x2 on 16x16 inputs
    rest = model.featurizer[flatten[0]:](feature_map)
    assert torch.equal(model.classifier(rest), model(images(2, 1)))


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_a_batch_gives_the_same_output_whatever_came_before(encoding):
    model, x = snn(encoding=encoding), images(4, 1)
    torch.manual_seed(1)
    alone = model(x)
    model(images(4, 2) * 5)  # strong input: a membrane carried over would make neurons fire sooner
    torch.manual_seed(1)
    assert torch.equal(model(x), alone)


def test_two_networks_never_share_state():
    """bi-model trains two SNNs side by side: interleaving their batches changes neither one's output."""
    a, b = snn(), snn()
    xa, xb = images(4, 1) * 2, images(4, 2) * 5
    expected = a(xa)
    b(xb)
    F.cross_entropy(b(xb), torch.zeros(4, dtype=torch.long)).backward()
    assert torch.equal(a(xa), expected)


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_cross_entropy_reaches_every_parameter_through_the_surrogate(encoding):
    model = snn(encoding=encoding)
    F.cross_entropy(model(images(8, 1) * 2), torch.arange(8) % 2).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_direct_coding_runs_the_first_conv_once_and_rate_coding_every_step():
    for encoding, calls in (("direct", 4), ("rate", 4 * 5)):
        model, batches = snn(encoding=encoding, steps=5), []
        first_conv = model.featurizer[1].layers[0]
        first_conv.register_forward_hook(lambda module, args, out, seen=batches: seen.append(len(args[0])))
        model(images(4, 1))
        assert batches == [calls], encoding


def test_a_trained_network_copies_and_reloads():
    """What the runner does with it: one step, deep copy for a target, state dict round trip."""
    model = snn()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    F.cross_entropy(model(images(8, 1)), torch.arange(8) % 2).backward()
    optimizer.step()
    model.eval()
    copied = copy.deepcopy(model)
    fresh = snn().eval()
    fresh.load_state_dict(model.state_dict())
    x = images(3, 2)
    assert torch.equal(copied(x), model(x)) and torch.equal(fresh(x), model(x))


def test_unknown_encoding_is_refused_at_construction():
    with pytest.raises(ValueError, match="encoding 'poisson' is not one of direct, rate"):
        snn(encoding="poisson")


def test_search_space_allows_the_defaults_and_the_documented_values():
    space = SNN.search_space
    assert set(space) <= set(SNN.defaults)
    assert all(space[key].contains(SNN.defaults[key]) for key in space)
    assert space["steps"].contains(6) and not space["steps"].searched  # docs/snn.md: --set snn.steps=6
    assert space["beta"].contains(0.5) and space["beta"].contains(1.0)
