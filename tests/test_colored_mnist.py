"""The ``colored_mnist`` spec on real MNIST: the seed report's bytes, rates, layout, swap, source; preview."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from oodbench.api import Dataset, Environment, Task, make_groups
from oodbench.data.catalog import SpecDataset, load_catalog, shipped_dir
from oodbench.data.environments import build_environments
from oodbench.data.mnist import MNIST, load_mnist
from oodbench.data.preview import preview, to_rgb
from oodbench.plugins import get_plugins

EXPECTED = {"train1": (0, 0.2, "train"), "train2": (20_000, 0.1, "train"), "test": (40_000, 0.9, "test")}
RED, GREEN = 0, 1

FROZEN_SHA256 = {
    0: "5e2553514054865876dbe23317a0c8227cba6d23cb1f36880f775e13cac085ff",
    1: "b6c6341c0cf2cc0c72f8280e51d8273662c0e0e866a8db819c9a5c833e4a4ab1",
}
"""Digests of the train1/train2/test environments the hand-coded builder (commit 7cab088) produced."""


def within_binomial(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def digest(envs: list[Environment]) -> str:
    h = hashlib.sha256()
    for e in envs:
        h.update(e.name.encode())
        h.update(e.role.encode())
        h.update(repr(e.ceiling).encode())
        for t in (e.x, e.y, e.attribute, e.group):
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def report_reference(images: torch.Tensor, digits: torch.Tensor, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """The seed report's construction written out directly: (x, y, color) of train1, train2, test."""
    generator = torch.Generator().manual_seed(seed)
    label_draw = torch.rand(60_000, generator=generator)
    color_draw = torch.rand(60_000, generator=generator)
    y = (digits >= 5).long() ^ (label_draw < 0.25).long()
    out = []
    for start, flip, _ in EXPECTED.values():
        part = slice(start, start + 20_000)
        color = y[part] ^ (color_draw[part] < flip).long()
        x = torch.zeros((20_000, 2, 28, 28), dtype=torch.uint8)
        x[torch.arange(20_000), color] = images[part]
        out.append((x, y[part], color))
    return out


@pytest.fixture(scope="module")
def real() -> MNIST:
    return load_mnist()


@pytest.fixture(scope="module")
def dataset() -> SpecDataset:
    (found,) = [d for d in load_catalog([shipped_dir()]).datasets if d.name == "colored_mnist"]
    return found


@pytest.fixture(scope="module")
def envs(dataset, real) -> list[Environment]:
    return build_environments(dataset.spec, 0, real)


@pytest.fixture(scope="module")
def seed1(dataset, real) -> list[Environment]:
    return build_environments(dataset.spec, 1, real)


def test_the_spec_builds_the_hand_coded_environments_byte_for_byte(envs, seed1, real):
    """Frozen digests make this a determinism test too: the same seed gives these bytes in every process."""
    assert digest(envs[:3]) == FROZEN_SHA256[0]
    assert digest(seed1[:3]) == FROZEN_SHA256[1]
    for env, (x, y, color) in zip(seed1, report_reference(real.train_x, real.train_y, 1)):
        assert torch.equal(env.x, x) and torch.equal(env.y, y) and torch.equal(env.attribute, color)


def test_environments_follow_the_report(envs):
    assert [(e.name, e.role, len(e)) for e in envs] == [
        *((n, r, 20_000) for n, (_, _, r) in EXPECTED.items()), ("source", "source", 10_000)]
    for env in envs:
        assert env.x.shape[1:] == (2, 28, 28) and env.x.dtype == torch.uint8
        assert env.y.dtype == env.attribute.dtype == env.group.dtype == torch.int64
    assert [e.ceiling for e in envs] == [0.75, 0.75, 0.75, 1.0]


def test_label_noise_is_a_quarter_and_the_color_flips_at_each_rate(envs, real):
    for env in envs[:3]:
        start, flip, _ = EXPECTED[env.name]
        clean = (real.train_y[start:start + len(env)] >= 5).long()
        assert within_binomial((env.y != clean).float().mean().item(), 0.25, len(env)), env.name
        assert within_binomial((env.attribute != env.y).float().mean().item(), flip, len(env)), env.name


def test_digit_is_painted_into_its_color_channel_only(envs, real):
    for env in envs[:3]:
        start = EXPECTED[env.name][0]
        digits = real.train_x[start:start + len(env)]
        red = env.attribute == RED
        assert red.any() and (~red).any()
        assert torch.equal(env.x[red, RED], digits[red]) and not env.x[red, GREEN].any()
        assert torch.equal(env.x[~red, GREEN], digits[~red]) and not env.x[~red, RED].any()


def test_groups_are_label_times_color(envs):
    for env in envs:
        assert torch.equal(env.group, make_groups(env.y, env.attribute, 2))
        assert bool((torch.bincount(env.group, minlength=4) > 0).all())


def test_source_is_plain_digits_of_the_mnist_test_images_with_clean_labels(envs, real):
    """Issue 15: the source is MNIST's 10 000 test images, which no train or test environment uses."""
    source = envs[3]
    assert torch.equal(source.x[:, 0], real.test_x) and torch.equal(source.x[:, 1], real.test_x)
    assert torch.equal(source.y, (real.test_y >= 5).long())


def test_swap_channels_turns_red_into_green_exactly(envs, dataset):
    task = Task("colored_mnist", (2, 28, 28), 2, ("train1", "train2"), "color", dataset.attribute_values,
                swap_channels=dataset.swap_channels)
    train1 = envs[0]
    swapped = task.swap_attribute(train1.x)
    red = train1.attribute == RED
    assert torch.equal(swapped[red, GREEN], train1.x[red, RED]) and not swapped[red, RED].any()
    assert torch.equal(task.swap_attribute(envs[3].x), envs[3].x)


def test_another_seed_draws_other_labels_and_colors(envs, seed1):
    for a, c in zip(envs, seed1):
        assert not torch.equal(a.y, c.y) or a.role == "source"
        assert not torch.equal(a.attribute, c.attribute)


def test_registered_dataset_is_the_shipped_spec(dataset):
    registered = get_plugins().registry("datasets").get("colored_mnist")
    assert isinstance(registered, SpecDataset) and isinstance(registered, Dataset)
    assert registered.spec == dataset.spec
    assert registered.provides == {"env", "group", "attribute", "source", "swap"}
    assert registered.num_classes == 2 and registered.attribute == "color"
    assert registered.attribute_values == ("red", "green")
    assert registered.swap_channels == (1, 0)


def test_to_rgb_maps_channels():
    gray = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(to_rgb(gray), torch.ones(1, 2, 2, 3))
    red_green = torch.zeros(1, 2, 2, 2)
    red_green[0, 1] = 0.5
    assert torch.equal(to_rgb(red_green)[0, 0, 0], torch.tensor([0.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="4 channels"):
        to_rgb(torch.zeros(1, 4, 2, 2))


def test_preview_writes_a_png_grid(envs, tmp_path):
    from matplotlib import image

    four = preview(envs, tmp_path / "sub" / "four.png", per_env=4)
    one = preview(envs[:1], tmp_path / "one.png", per_env=4)
    assert four.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (h4, w4, rgb), (h1, w1, _) = image.imread(four).shape, image.imread(one).shape
    assert rgb in (3, 4) and w4 == w1 and h4 > 3 * h1
