"""Encodings and per-step layers: the time-invariant first layer runs once, rate coding draws spikes."""

import pytest
import torch
from oodbench_snn.timesteps import (
    EachStep,
    Encode,
    Rate,
    StackTime,
    UnstackTime,
    constant_in_time,
)
from torch import nn


def test_direct_encoding_repeats_the_image_as_a_view():
    x = torch.rand(3, 2, 5, 5)
    train = Encode(4, "direct")(x)
    assert train.shape == (3, 4, 2, 5, 5) and constant_in_time(train)
    assert all(torch.equal(train[:, t], x) for t in range(4))


def test_rate_encoding_draws_binary_spikes_at_the_pixel_intensity():
    torch.manual_seed(0)
    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 3, 1, 1).expand(2000, 3, 1, 1)
    train = Encode(5, "rate")(x)
    assert train.shape == (2000, 5, 3, 1, 1) and not constant_in_time(train)
    assert set(train.unique().tolist()) == {0.0, 1.0}
    rates = train.mean((0, 1)).flatten()
    assert rates[0] == 0 and rates[2] == 1 and abs(rates[1] - 0.25) < 0.02
    assert not torch.equal(train[:, 0], train[:, 1])  # a fresh draw every step


def test_encode_rejects_unknown_encodings_and_steps():
    with pytest.raises(ValueError, match="direct, rate"):
        Encode(4, "latency")
    with pytest.raises(ValueError, match="steps"):
        Encode(0, "direct")


class CountingConv(nn.Conv2d):
    """A conv that records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__(2, 3, 3)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return super().forward(x)


def test_a_constant_input_runs_the_layer_once_per_sample():
    conv = CountingConv()
    x = torch.rand(3, 2, 6, 6)
    out = EachStep(conv)(Encode(5, "direct")(x))
    assert conv.batches == [3]
    assert out.shape == (3, 5, 3, 4, 4) and constant_in_time(out)
    assert torch.allclose(out[:, 4], conv(x))


def test_a_varying_input_runs_the_layer_at_every_step_in_one_call():
    conv = CountingConv()
    train = torch.rand(3, 5, 2, 6, 6)
    out = EachStep(conv)(train)
    assert conv.batches == [15]
    for t in range(5):
        assert torch.allclose(out[:, t], conv(train[:, t]), atol=1e-6)


def test_stacking_time_into_channels_and_back_after_flatten():
    train = torch.rand(2, 3, 4, 5, 5)
    stacked = StackTime()(train)
    assert stacked.shape == (2, 12, 5, 5) and torch.equal(stacked[:, 4:8], train[:, 1])
    restored = UnstackTime(3)(nn.Flatten()(stacked))
    assert torch.equal(restored, train.flatten(2))
    assert torch.equal(Rate()(restored), train.flatten(2).mean(1))
