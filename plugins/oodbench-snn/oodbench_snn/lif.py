"""Leaky integrate-and-fire neurons run over a whole input train, membrane state explicit per call.

snntorch 1.0.0's ``Leaky`` keeps hidden state on the module. Called with
``mem=None`` it goes on from the previous call's membrane whenever the shapes
match, so one batch leaks into the next; after a call its last membrane and
reset tensors stay attached to the module, autograd graph and all; and
``snntorch.utils.reset`` misses neurons nested one container down and zeroes
other networks' state (upstream issue #438, fix unreleased). So every call
here starts from a zero membrane it creates itself, hands the membrane to the
neuron at every step and drops the neuron's copies afterwards: nothing
survives from one call to the next and two networks never share anything.
``snntorch.utils.reset`` and ``SpikingNeuron.instances`` are never used.
"""

from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn


class LIF(nn.Module):
    """A layer of leaky integrate-and-fire neurons: input currents [B, T, ...] -> binary spikes [B, T, ...].

    u_t = beta * u_(t-1) + I_t - s_(t-1) * threshold (snntorch's reset by
    subtraction), s_t = 1[u_t > threshold], u_0 = 0 for every call. The
    backward pass replaces the step's zero-almost-everywhere derivative with
    snntorch's arctan surrogate, which is what lets cross-entropy train the
    weights below a spiking layer.
    """

    def __init__(self, beta: float, threshold: float = 1.0) -> None:
        super().__init__()
        self.neuron = snn.Leaky(beta=beta, threshold=threshold, spike_grad=surrogate.atan(), init_hidden=False)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        membrane = torch.zeros_like(current[:, 0])
        spikes = []
        for step in range(current.shape[1]):
            spike, membrane = self.neuron(current[:, step], membrane)
            spikes.append(spike)
        self._forget()
        return torch.stack(spikes, dim=1)

    def _forget(self) -> None:
        """Drop the last membrane and reset tensors ``Leaky`` caches on itself (they would pin the graph)."""
        self.neuron.mem = self.neuron.mem.new_zeros(0)
        self.neuron.reset = self.neuron.mem
