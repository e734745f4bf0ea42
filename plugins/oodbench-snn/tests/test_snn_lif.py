"""The LIF layer on snntorch's Leaky: binary spikes, the dynamics, explicit state, the surrogate gradient."""

import copy

import torch
from oodbench_snn.lif import LIF


def test_spikes_are_binary():
    spikes = LIF(beta=0.9)(torch.randn(4, 6, 3, 5, 5) * 2)
    assert set(spikes.unique().tolist()) == {0.0, 1.0}


def test_constant_current_follows_leak_integrate_fire_and_subtractive_reset():
    # u1 = 0.6; u2 = 0.54 + 0.6 = 1.14 > 1 fires; u3 = 1.026 + 0.6 - 1 = 0.626; u4 = 0.5634 + 0.6 = 1.1634 fires
    spikes = LIF(beta=0.9)(torch.full((1, 4, 1), 0.6))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_membrane_starts_from_zero_every_call():
    lif = LIF(beta=0.9)
    strong, weak = torch.full((2, 3, 4), 0.9), torch.full((2, 3, 4), 0.6)
    alone = lif(weak)
    lif(strong)  # would leave a membrane of 0.9 * 2.71 - 1 behind if state carried over
    assert torch.equal(lif(weak), alone)
    assert alone[:, 0].eq(0).all()  # no neuron fires on the first step from a zero membrane at 0.6


def test_the_neuron_keeps_no_tensor_from_the_last_call():
    lif = LIF(beta=0.9)
    current = torch.randn(2, 3, 4, requires_grad=True)
    lif(current).sum().backward()
    assert lif.neuron.mem.numel() == 0 and lif.neuron.reset.numel() == 0
    copy.deepcopy(lif)  # a cached non-leaf membrane would make this raise


def test_two_layers_never_share_state():
    a, b = LIF(beta=0.9), LIF(beta=0.9)
    xa, xb = torch.rand(2, 5, 7) * 2, torch.rand(2, 5, 7) * 2
    expected_a, expected_b = a(xa), b(xb)
    interleaved = [a(xa), b(xb), a(xa)]
    assert torch.equal(interleaved[0], expected_a) and torch.equal(interleaved[2], expected_a)
    assert torch.equal(interleaved[1], expected_b)


def test_gradient_flows_through_the_surrogate_where_the_step_has_none():
    current = torch.full((1, 3, 2), 0.3, requires_grad=True)  # never reaches threshold: no spike at all
    spikes = LIF(beta=0.9)(current)
    assert spikes.sum() == 0
    spikes.sum().backward()
    assert current.grad.abs().min() > 0  # the Heaviside step alone would give exactly zero
