"""Statistics of the shipped specs on real MNIST: sizes, layout, label noise, attribute/label agreement, determinism.

``colored_mnist`` has its own file (test_colored_mnist.py). Every dataset is
built once per module for seed 0; images of shuffled datasets are traced
back to their MNIST index by content, so labels can be checked against the
digits they came from.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from oodbench.api import Environment, make_groups
from oodbench.data.catalog import SpecDataset, load_catalog, shipped_dir
from oodbench.data.environments import build_environments
from oodbench.data.mnist import MNIST, load_mnist

SHIPPED = ("colored_mnist", "colored_mnist_irm", "colored_mnist_irm_gray", "colored_mnist_guard",
           "colored_mnist_domainbed", "digit_color_shift", "background_shift")


def within_binomial(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


def rate(mask: torch.Tensor) -> float:
    return mask.float().mean().item()


def fingerprint(images: torch.Tensor, chunk: int = 10_000) -> torch.Tensor:
    """A float64 key per image (exact: the weighted byte sums stay below 2**53)."""
    weights = torch.randint(1, 2**20, (images[0].numel(),), generator=torch.Generator().manual_seed(0)).double()
    return torch.cat([images[i:i + chunk].reshape(-1, len(weights)).double() @ weights
                      for i in range(0, len(images), chunk)])


def locate(images: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """The pool index of each image, matched by content (MNIST has no two identical images, even at 14x14)."""
    keys = fingerprint(pool)
    order = keys.argsort()
    found = order[torch.searchsorted(keys[order], fingerprint(images)).clamp(max=len(pool) - 1)]
    assert torch.equal(pool[found], images), "an image is not an MNIST image"
    return found


@pytest.fixture(scope="module")
def real() -> MNIST:
    return load_mnist()


@pytest.fixture(scope="module")
def shipped() -> dict[str, SpecDataset]:
    return {d.name: d for d in load_catalog([shipped_dir()]).datasets}


@pytest.fixture(scope="module")
def built(shipped, real) -> dict[str, dict[str, Environment]]:
    names = [n for n in SHIPPED if n != "colored_mnist"]
    return {n: {e.name: e for e in build_environments(shipped[n].spec, 0, real)} for n in names}


def test_every_shipped_spec_is_valid_and_registered(shipped):
    assert set(shipped) == set(SHIPPED)
    assert all(isinstance(d, SpecDataset) for d in shipped.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_source_environments_share_no_pool_position_with_train_val_or_test(shipped, name):
    """Issue 15: a DANN source must not adapt on digits the method is trained, selected or evaluated on."""
    envs = shipped[name].spec.environments
    used = {p for e in envs if e.role != "source" for p in e.positions()}
    for source in (e for e in envs if e.role == "source"):
        assert used.isdisjoint(source.positions()), (name, source.name)
    if name == "colored_mnist":
        assert [e.positions() for e in envs if e.role == "source"] == [range(60_000, 70_000)]


def check_label_colors(env: Environment, clean: torch.Tensor, noise: float, flip: float) -> None:
    """Labels flipped at ``noise`` from ``clean``; red (0) / green (1) disagreeing with the label at ``flip``."""
    n = len(env)
    assert within_binomial(rate(env.y != clean), noise, n), (env.name, rate(env.y != clean))
    assert within_binomial(rate(env.attribute != env.y), flip, n), (env.name, rate(env.attribute != env.y))
    assert torch.equal(env.group, make_groups(env.y, env.attribute, 2))


def test_irm_matches_the_paper(built, real):
    envs = built["colored_mnist_irm"]
    assert [(e.name, e.role, len(e)) for e in envs.values()] == [
        ("env1", "train", 25_000), ("env2", "train", 25_000), ("test", "test", 10_000)]
    pool = real.train_x[:, ::2, ::2]
    where = {}
    for (name, env), flip in zip(envs.items(), (0.2, 0.1, 0.9)):
        assert env.x.shape[1:] == (2, 14, 14) and env.x.dtype == torch.uint8 and env.ceiling == 0.75
        color = env.x[torch.arange(len(env)), env.attribute]
        assert not env.x[torch.arange(len(env)), 1 - env.attribute].any()  # one channel holds the digit
        where[name] = locate(color, pool)
        check_label_colors(env, (real.train_y[where[name]] < 5).long(), 0.25, flip)
    train = torch.cat([where["env1"], where["env2"]])
    assert torch.equal(train.sort().values, torch.arange(50_000))  # a split of the first 50 000, shuffled
    assert not torch.equal(where["env1"], torch.arange(0, 50_000, 2))
    assert torch.equal(where["test"], torch.arange(50_000, 60_000))


def test_the_guard_dataset_is_the_irm_construction_at_5000_per_environment_in_rgb(built, real):
    envs = built["colored_mnist_guard"]
    assert [(e.name, e.role, len(e)) for e in envs.values()] == [
        ("env1", "train", 5_000), ("env2", "train", 5_000), ("test", "test", 5_000), ("source", "source", 5_000)]
    pool = real.train_x[:, ::2, ::2]
    where = {}
    for (name, env), flip in zip(envs.items(), (0.2, 0.1, 0.9)):
        assert env.x.shape[1:] == (3, 14, 14) and env.ceiling == 0.75
        assert not env.x[:, 2].any()  # red or green on black: the blue channel is empty
        color = env.x[torch.arange(len(env)), env.attribute]
        assert not env.x[torch.arange(len(env)), 1 - env.attribute].any()
        where[name] = locate(color, pool)
        check_label_colors(env, (real.train_y[where[name]] < 5).long(), 0.25, flip)
    used = torch.cat([where["env1"], where["env2"], where["test"]])  # the first 15 000, shuffled, dealt out
    assert torch.equal(used.sort().values, torch.arange(15_000))
    source = envs["source"].x
    assert torch.equal(source[:, 0], source[:, 1]) and torch.equal(source[:, 1], source[:, 2])  # grayscale


def test_irm_gray_is_the_same_draw_without_color(built):
    colored, gray = built["colored_mnist_irm"], built["colored_mnist_irm_gray"]
    for name, env in gray.items():
        assert env.x.shape[1:] == (1, 14, 14)
        assert torch.equal(env.y, colored[name].y) and torch.equal(env.attribute, colored[name].attribute)
        assert torch.equal(env.x[:, 0], colored[name].x.amax(dim=1))


def test_domainbed_deals_all_70000_images_into_three_environments(built, real):
    envs = built["colored_mnist_domainbed"]
    assert [(e.name, e.role, len(e)) for e in envs.values()] == [
        ("plus90", "train", 23_334), ("plus80", "train", 23_333), ("minus90", "test", 23_333)]
    pool = torch.cat([real.train_x, real.test_x])
    digits = torch.cat([real.train_y, real.test_y])
    indices = []
    for env, flip in zip(envs.values(), (0.1, 0.2, 0.9)):
        assert env.x.shape[1:] == (2, 28, 28)
        index = locate(env.x.amax(dim=1), pool)
        indices.append(index)
        check_label_colors(env, (digits[index] < 5).long(), 0.25, flip)
        assert within_binomial(rate(index >= 60_000), 1 / 7, len(env))  # test images spread over all three
    assert torch.equal(torch.cat(indices).sort().values, torch.arange(70_000))


def drawn(digits: torch.Tensor, digit_rgb: torch.Tensor, background_rgb: torch.Tensor) -> torch.Tensor:
    """What RGB images of ink ``digits`` in one color over another must be (checked on every 4th image: speed)."""
    out = []
    for i in range(0, len(digits), 5_000):
        ink = digits[i:i + 5_000].int()[:, None]
        fg, bg = digit_rgb[i:i + 5_000, :, None, None].int(), background_rgb[i:i + 5_000, :, None, None].int()
        out.append(((ink * fg + (255 - ink) * bg + 127) // 255).byte())
    return torch.cat(out)


def test_digit_color_shift_environments(built, real):
    envs = built["digit_color_shift"]
    expected = {"train_red": ((255, 0, 0), (0, 0, 0)), "train_green": ((0, 255, 0), (0, 0, 0)),
                "train_white": ((255, 255, 255), (0, 0, 0)), "test_yellow_on_white": ((255, 255, 0), (255, 255, 255)),
                "test_blue_on_white": ((0, 0, 255), (255, 255, 255))}
    assert [(e.name, e.role, len(e)) for e in envs.values()] == [
        *((n, "train", 15_000) for n in list(expected)[:3]), *((n, "test", 5_000) for n in list(expected)[3:]),
        ("test_random", "test", 5_000)]
    start = 0
    for index, env in enumerate(envs.values()):
        n, digits = len(env), real.train_x[start:start + len(env)]
        assert env.x.shape[1:] == (3, 28, 28) and env.ceiling == 1.0
        assert torch.equal(env.y, (real.train_y[start:start + n] >= 5).long())
        assert bool((env.attribute == index).all())
        if env.name in expected:
            digit_rgb, background_rgb = (torch.tensor([c]).expand(n, 3)[::4] for c in expected[env.name])
            assert torch.equal(env.x[::4], drawn(digits[::4], digit_rgb, background_rgb)), env.name
        else:
            flat, ink = env.x.reshape(n, 3, -1), digits.reshape(n, -1)
            full = ink.max(dim=1).values == 255  # most digits have a pixel of full ink: the digit color itself
            rows = torch.arange(n)[full]
            digit_rgb = flat[rows, :, ink[full].argmax(dim=1)].long()
            background_rgb = flat[rows, :, ink[full].argmin(dim=1)].long()
            assert torch.equal(env.x[rows], drawn(digits[rows], digit_rgb, background_rgb))
            assert bool(((digit_rgb - background_rgb).float().norm(dim=1) / (255 * math.sqrt(3)) >= 0.4).all())
            for colors in (digit_rgb, background_rgb):  # drawn per image
                assert len(colors.unique(dim=0)) > 0.95 * len(rows)
        start += n


def test_background_shift_ties_the_background_to_the_label_then_reverses(built, real):
    envs = built["background_shift"]
    assert [(e.name, e.role, len(e)) for e in envs.values()] == [("train", "train", 50_000), ("test", "test", 10_000)]
    white_black = torch.tensor([[255, 255, 255], [0, 0, 0]])  # attribute values = [white, black]
    start = 0
    for env in envs.values():
        n = len(env)
        assert env.x.shape[1:] == (3, 28, 28) and env.ceiling == 1.0
        assert torch.equal(env.y, (real.train_y[start:start + n] >= 5).long())
        blue = torch.tensor([[0, 0, 255]]).expand(n, 3)[::4]
        assert torch.equal(env.x[::4], drawn(real.train_x[start:start + n:4], blue, white_black[env.attribute[::4]]))
        start += n
    train, test = envs["train"], envs["test"]
    for label in (0, 1):
        agree = rate(train.attribute[train.y == label] == label)
        assert within_binomial(agree, 0.95, int((train.y == label).sum())), (label, agree)
    assert torch.equal(test.attribute, 1 - test.y)


def truncated(dataset: SpecDataset, size: int) -> SpecDataset:
    """The same spec with every environment cut to its first ``size`` positions: a cheap build."""
    envs = tuple(dataclasses.replace(e, stop=min(e.stop, e.start + size * e.step)) for e in dataset.spec.environments)
    return SpecDataset(dataclasses.replace(dataset.spec, environments=envs))


@pytest.mark.parametrize("name", SHIPPED)
def test_builds_are_deterministic_per_seed(shipped, real, name):
    small = truncated(shipped[name], 2_000)
    first, again, other = (build_environments(small.spec, seed, real) for seed in (0, 0, 1))
    for a, b in zip(first, again):
        assert all(torch.equal(getattr(a, p), getattr(b, p)) for p in ("x", "y", "attribute", "group"))
    assert any(not torch.equal(a.x, c.x) for a, c in zip(first, other))  # fixed-color environments may not move
