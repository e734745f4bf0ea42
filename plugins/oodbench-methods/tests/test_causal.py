"""Mechanics of bi_loss, bi_model and adjust on tiny tensors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oodbench.api import Batch, Environment, Task, attribute_prior, make_groups
from oodbench_methods.adjust import Adjust, balanced_indices
from oodbench_methods.bi_loss import BiLoss, versions_by_attribute
from oodbench_methods.bi_model import BiModel, PriorMixture


class Tiny(nn.Module):
    def __init__(self, channels=2, num_classes=2):
        super().__init__()
        self.featurizer = nn.Flatten()
        self.classifier = nn.Linear(channels * 4, num_classes)
        self.n_features = channels * 4
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.classifier(self.featurizer(x))


def _task(swap=(1, 0), channels=2):
    return Task("toy", (channels, 2, 2), 2, ("e0",), "color", ("red", "green"), swap_channels=swap)


def _env(attributes, labels, channels=2):
    a = torch.tensor(attributes)
    y = torch.tensor(labels)
    x = torch.rand(len(a), channels, 2, 2)
    return Environment("e0", "train", x, y, a, make_groups(y, a, 2))


def _batch(env):
    return Batch(env.x, env.y, torch.zeros_like(env.y), env.group, env.attribute)


def test_swap_permutes_exactly_the_declared_channels():
    x = torch.arange(3 * 4, dtype=torch.float).view(1, 3, 2, 2)
    swapped = _task(swap=(1, 0, 2), channels=3).swap_attribute(x)
    assert torch.equal(swapped[0, 0], x[0, 1]) and torch.equal(swapped[0, 1], x[0, 0])
    assert torch.equal(swapped[0, 2], x[0, 2])
    with pytest.raises(ValueError, match="no swap_channels"):
        _task(swap=None).swap_attribute(x)


def test_versions_by_attribute_renders_each_value():
    x = torch.rand(2, 2, 2, 2)
    attribute = torch.tensor([0, 1])
    swapped = x.flip(1)
    red, green = versions_by_attribute(x, attribute, swapped)
    assert torch.equal(red[0], x[0]) and torch.equal(red[1], swapped[1])
    assert torch.equal(green[0], swapped[0]) and torch.equal(green[1], x[1])


def test_prior_is_measured_not_assumed():
    env = _env([0, 0, 0, 1], [0, 1, 0, 1])
    assert attribute_prior([env], 2).tolist() == [0.75, 0.25]
    algo = BiLoss(lambda: Tiny(), _task(), dict(BiLoss.defaults))
    algo.setup([env])
    assert algo.prior.tolist() == [0.75, 0.25]


def test_bi_loss_weights_the_two_renderings_by_the_prior():
    torch.manual_seed(0)
    env = _env([0, 0, 0, 1], [0, 1, 0, 1])
    algo = BiLoss(lambda: Tiny(), _task(), dict(BiLoss.defaults))
    algo.setup([env])
    loss, stats = algo.objective([_batch(env)])
    red = torch.where(env.attribute.view(-1, 1, 1, 1) == 0, env.x, env.x.flip(1))
    green = torch.where(env.attribute.view(-1, 1, 1, 1) == 1, env.x, env.x.flip(1))
    expected = 0.75 * F.cross_entropy(algo.model(red), env.y) + 0.25 * F.cross_entropy(algo.model(green), env.y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(stats) == {"loss_red", "loss_green"}


def test_prior_mixture_is_the_backdoor_formula():
    members = [nn.Linear(3, 2), nn.Linear(3, 2)]
    weights = torch.tensor([0.7, 0.3])
    mixture = PriorMixture(members, weights)
    x = torch.rand(5, 3)
    expected = (0.7 * F.softmax(members[0](x), 1) + 0.3 * F.softmax(members[1](x), 1)).log()
    assert torch.allclose(mixture(x), expected, atol=1e-6)


def test_bi_model_trains_each_network_on_its_own_color_paired():
    env = _env([0, 1, 0, 0, 1], [0, 1, 1, 0, 0])
    algo = BiModel(lambda: Tiny(), _task(), dict(BiModel.defaults))
    algo.setup([env])
    assert algo.mixture.weights.tolist() == pytest.approx([0.6, 0.4])
    stats = algo.update([_batch(env)])
    red_net, green_net = algo.mixture.members
    assert stats["paired"] == 2.0
    assert torch.equal(red_net.seen[-1], env.x[[0, 2]])  # first two red images
    assert torch.equal(green_net.seen[-1], env.x[[1, 4]])  # both green images
    assert algo.network() is algo.mixture
    x = torch.rand(3, 2, 2, 2)
    assert torch.equal(algo.predict(x), algo.network()(x))


def test_balanced_indices_draw_every_group_equally():
    groups = [torch.arange(0, 90), torch.arange(90, 95), torch.arange(95, 100)]
    index = balanced_indices(groups, 30, torch.Generator().manual_seed(0))
    counts = [((index >= g.min()) & (index <= g.max())).sum().item() for g in groups]
    assert counts == [10, 10, 10]


def test_adjust_balance_mode_resamples_equal_cells():
    # 6 samples of group (0, red), 1 each of the others: a heavily skewed pool
    env = _env([0, 0, 0, 0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0, 0, 1, 1])
    algo = Adjust(lambda: Tiny(), _task(), dict(Adjust.defaults, mode="balance"))
    algo.setup([env])
    algo.objective([_batch(env)] * 2)  # 18 samples -> 4 per group (4 groups)
    seen = algo.model.seen[-1]
    groups = torch.cat([env.group[(env.x == s).flatten(1).all(1)][:1] for s in seen])
    assert torch.bincount(groups, minlength=4).tolist() == [4, 4, 4, 4]


def test_adjust_counterfactual_mode_adds_the_swapped_copy():
    env = _env([0, 1], [0, 1])
    algo = Adjust(lambda: Tiny(), _task(), dict(Adjust.defaults, mode="counterfactual"))
    algo.objective([_batch(env)])
    assert torch.equal(algo.model.seen[-1], torch.cat([env.x, env.x.flip(1)]))


def test_adjust_needs_depend_on_mode():
    assert Adjust.needs({"mode": "counterfactual"}) == {"attribute", "swap"}
    assert Adjust.needs({"mode": "balance"}) == {"group"}
    with pytest.raises(ValueError, match="mode"):
        Adjust(lambda: Tiny(), _task(), dict(Adjust.defaults, mode="nope"))


class _Constant(nn.Module):
    """A fixed answer for what it is shown: the first pixel of channel 0 says the class."""

    def forward(self, x):
        p = x[:, 0, 0, 0].clamp(0.01, 0.99)
        return torch.stack([(1 - p).log(), p.log()], dim=1)


class _Router(nn.Module):
    """Certain that an image is in value 0 when its channel 0 is the brighter one."""

    def forward(self, x):
        red = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).float()
        return torch.stack([red, 1 - red], dim=1) * 50


def test_counterfactual_mixture_asks_each_member_about_the_image_in_its_own_value():
    member_red, member_green = _Constant(), _Constant()
    mixture = PriorMixture([member_red, member_green], torch.tensor([0.5, 0.5]), _Router(), (1, 0))
    red = torch.tensor([[[[0.9, 0.8], [0.7, 0.9]], [[0.2, 0.1], [0.1, 0.1]]]])
    green = red[:, [1, 0]]
    # each member answers about the red rendering (0.9) or the green one (0.2): both images get the same answer
    expected = torch.tensor([[0.5 * 0.1 + 0.5 * 0.8, 0.5 * 0.9 + 0.5 * 0.2]]).log()
    assert torch.allclose(mixture(red), expected, atol=1e-5)
    assert torch.allclose(mixture(green), expected, atol=1e-5)
    plain = PriorMixture([member_red, member_green], torch.tensor([0.5, 0.5]))
    assert not torch.allclose(plain(red), plain(green))


def test_counterfactual_bi_model_trains_a_router_on_the_attribute_and_needs_the_swap():
    assert BiModel.needs(dict(BiModel.defaults)) == {"attribute"}
    assert BiModel.needs(dict(BiModel.defaults, counterfactual=True)) == {"attribute", "swap"}
    torch.manual_seed(0)
    env = _env([0, 1] * 16, [0, 1] * 16)
    env.x[env.attribute == 0, 0] += 1.0
    env.x[env.attribute == 1, 1] += 1.0
    algo = BiModel(lambda: Tiny(), _task(), dict(BiModel.defaults, counterfactual=True, lr=5e-2))
    algo.setup([env])
    first = algo.update([_batch(env)])["routing"]
    for _ in range(60):
        last = algo.update([_batch(env)])["routing"]
    assert last < first / 4
    assert (algo.mixture.router(env.x).argmax(1) == env.attribute).all()


def test_counterfactual_bi_model_needs_a_binary_attribute():
    task = Task("toy", (2, 2, 2), 2, ("e0",), "color", ("red", "green", "blue"), swap_channels=(1, 0))
    with pytest.raises(ValueError, match="binary attribute"):
        BiModel(lambda: Tiny(), task, dict(BiModel.defaults, counterfactual=True))
