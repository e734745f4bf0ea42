"""Improved RSC: the fixed Sobel branch, the fused network's shape, the weighted mask."""

import pytest
import torch

from oodbench_methods.rsc import channel_mask, spatial_mask
from oodbench_methods.rsc_plus import EdgeFused, RSCPlus, Sobel
from toys import TinyConv, TinyDense, batch, task


def test_sobel_responds_to_a_step_edge_and_only_there():
    x = torch.zeros(1, 1, 4, 6)
    x[..., 3:] = 1.0
    edges = Sobel(1)(x)[0, 0]
    expected = torch.zeros(4, 6)
    expected[:, 2:4] = 4.0  # 1 + 2 + 1 across the step, on both sides of it
    assert torch.allclose(edges, expected, atol=1e-2)
    assert torch.allclose(Sobel(1)(x.transpose(2, 3))[0, 0], expected.T, atol=1e-2)  # the same edge turned


def test_sobel_works_per_channel():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 1, :, 2:] = 1.0
    edges = Sobel(2)(x)
    assert edges[0, 0].max() < 1e-2 and edges[0, 1].max() == pytest.approx(4.0, abs=1e-2)


def test_sobel_branch_is_fixed():
    torch.manual_seed(0)
    algo = RSCPlus(TinyConv, task(), dict(RSCPlus.defaults))
    sobel = algo.model.featurizer[0].sobel
    assert list(sobel.parameters()) == [] and not sobel.kernels.requires_grad
    before = sobel.kernels.clone()
    algo.update([batch(8, 0, 1), batch(8, 1, 2)])
    assert torch.equal(sobel.kernels, before)
    assert any(k.endswith("sobel.kernels") for k in algo.state_dict())


def test_fused_network_keeps_the_backbone_shape_and_normalises_each_sample():
    net = EdgeFused(TinyConv(), (2, 4, 4))
    assert isinstance(net.featurizer[1], torch.nn.Flatten) and net.n_features == 5
    seen = []
    net.featurizer[0].conv.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.rand(3, 2, 4, 4) * torch.tensor([1.0, 5.0, 2.0]).view(3, 1, 1, 1)
    assert net(x).shape == (3, 2)
    # the conv layers see every (sample, channel) slice at mean beta = 0 and std gamma = 1, whatever its scale
    assert torch.allclose(seen[0].mean((2, 3)), torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(seen[0].var((2, 3), unbiased=False), torch.ones(3, 2), atol=1e-3)
    with pytest.raises(ValueError, match="rsc_plus needs a conv feature map.*tiny_dense"):
        RSCPlus(TinyDense, task(), dict(RSCPlus.defaults))


def test_mask_weighs_spatial_by_alpha_and_channel_by_one_minus_alpha():
    torch.manual_seed(0)
    algo = RSCPlus(TinyConv, task(), dict(RSCPlus.defaults))
    grad = torch.randn(2, 3, 4, 4)
    mask = algo.challenge_mask(grad)
    expected = 0.3 * spatial_mask(grad, 1 / 3) + 0.7 * channel_mask(grad, 1 / 3)
    assert torch.allclose(mask, expected)
    assert torch.isclose(mask[..., None], torch.tensor([0.0, 0.3, 0.7, 1.0])).any(-1).all()
    assert (mask == 0).any() and (mask == 1).any()


def test_each_change_switches_off_on_its_own():
    torch.manual_seed(0)
    plain = RSCPlus(TinyConv, task(), dict(RSCPlus.defaults, instance_norm=False, sobel=False, mask="random"))
    feature_map = plain.model.featurizer[0]
    assert isinstance(feature_map.norm, torch.nn.Identity) and feature_map.sobel is None
    assert feature_map.fuse[0].in_channels == feature_map.fuse[0].out_channels
    x = torch.rand(3, 2, 4, 4)
    assert torch.equal(feature_map(x), feature_map.fuse(feature_map.conv(x)))
    grad = torch.randn(2, 3, 4, 4)
    channel, spatial = channel_mask(grad, 1 / 3), spatial_mask(grad, 1 / 3)
    drawn = [plain.challenge_mask(grad) for _ in range(20)]
    assert all(torch.equal(m, channel) or torch.equal(m, spatial) for m in drawn)  # never the 0.3 / 0.7 mix
    assert any(torch.equal(m, channel) for m in drawn) and any(torch.equal(m, spatial) for m in drawn)
    assert plain.update([batch(8, 0, 1), batch(8, 1, 2)])["muted"] > 0
    with pytest.raises(ValueError, match="mask 'both' not in"):
        RSCPlus(TinyConv, task(), dict(RSCPlus.defaults, mask="both"))
