"""Moving a batch through time: input encodings, per-step stateless layers, and the rate readout.

Tensors between layers are batch-major spike or current trains [B, T, ...].
Only the LIF neurons (``oodbench_snn.lif``) depend on the previous step; every
other layer is applied to all T steps at once by folding time into the batch,
which is exact for a feed-forward network and far cheaper than stepping the
whole network T times.
"""

from __future__ import annotations

import torch
from snntorch import spikegen
from torch import nn

ENCODINGS = ("direct", "rate")
"""``direct``: the static image at every step; ``rate``: Bernoulli (Poisson) spikes, p = pixel intensity."""


class Encode(nn.Module):
    """Images [B, C, H, W] in [0, 1] -> input train [B, T, C, H, W].

    ``direct`` returns an expanded view (stride 0 over time), which tells
    ``EachStep`` the input is constant in time; ``rate`` draws fresh spikes
    every call with snntorch's ``spikegen.rate_conv``.
    """

    def __init__(self, steps: int, encoding: str) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps, self.encoding = steps, encoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        train = x.unsqueeze(1).expand(-1, self.steps, *x.shape[1:])
        return train if self.encoding == "direct" else spikegen.rate_conv(train)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, encoding={self.encoding}"


def constant_in_time(train: torch.Tensor) -> bool:
    """True for an expanded view that repeats one tensor over the time axis (stride 0)."""
    return train.shape[1] > 1 and train.stride(1) == 0


class EachStep(nn.Module):
    """Stateless layers applied at every time step: [B, T, ...] -> [B, T, ...], time folded into the batch.

    An input constant in time gives an output constant in time, so it is
    computed once per sample and expanded again: the first conv of a
    direct-coded SNN costs what it costs in a CNN, whatever T is.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, train: torch.Tensor) -> torch.Tensor:
        b, t = train.shape[:2]
        if constant_in_time(train):
            out = self.layers(train[:, 0])
            return out.unsqueeze(1).expand(b, t, *out.shape[1:])
        out = self.layers(train.reshape(b * t, *train.shape[2:]))
        return out.view(b, t, *out.shape[1:])


class StackTime(nn.Module):
    """[B, T, C, H, W] -> [B, T*C, H, W]: the spike trains as one conv feature map, each step's maps as channels.

    This is what a method that works on the conv feature map (RSC) sees and
    mutes: a channel there is one feature map at one time step.
    """

    def forward(self, train: torch.Tensor) -> torch.Tensor:
        return train.flatten(1, 2)


class UnstackTime(nn.Module):
    """[B, T*N] -> [B, T, N]: the flattened feature map back into a train of T steps."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.unflatten(1, (self.steps, -1))

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class Rate(nn.Module):
    """[B, T, N] spikes -> [B, N] firing rates: the flat feature vector the classifier reads."""

    def forward(self, train: torch.Tensor) -> torch.Tensor:
        return train.mean(1)
