"""The lenet backbone: seed 001's layer stack, any input size it can take, the featurizer/classifier split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oodbench.builtin.lenet import MIN_SIZE, LeNet
from oodbench.plugins import get_plugins


def test_registered_as_a_builtin_backbone():
    assert get_plugins().registry("backbones").get("lenet") is LeNet


def test_seed_layout_on_rgb_28x28():
    net = LeNet((3, 28, 28), 2)
    convs = [m for m in net.featurizer if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 6, (5, 5)), (6, 16, (5, 5))]
    linears = [m for m in net.featurizer if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16 * 5 * 5, 120), (120, 84)]
    # ReLU after every conv and dense layer, none of the original's sigmoids
    kinds = [type(m) for m in net.featurizer]
    assert all(kinds[i + 1] is nn.ReLU for i, k in enumerate(kinds) if k in (nn.Conv2d, nn.Linear))
    assert nn.Sigmoid not in kinds
    assert net.n_features == 84 and net.classifier.in_features == 84 and net.classifier.out_features == 2


def test_conv_layers_come_before_the_flatten():
    net = LeNet((3, 28, 28), 2)
    flatten = next(i for i, m in enumerate(net.featurizer) if isinstance(m, nn.Flatten))
    assert flatten > 0 and all(not isinstance(m, nn.Conv2d) for m in net.featurizer[flatten:])
    assert net.featurizer[:flatten](torch.zeros(1, 3, 28, 28)).shape == (1, 16, 5, 5)


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 28, 28), (1, 14, 14), (3, MIN_SIZE, MIN_SIZE), (3, 32, 20)])
def test_any_input_shape_it_can_take(shape):
    net = LeNet(shape, 2)
    x = torch.rand(4, *shape)
    assert net(x).shape == (4, 2)
    assert torch.equal(net(x), net.classifier(net.featurizer(x)))


def test_too_small_an_image_is_refused_with_the_minimum():
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE}x{MIN_SIZE}, got 11x28"):
        LeNet((3, 11, 28), 2)
