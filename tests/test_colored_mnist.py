"""ColoredMNIST on real MNIST: rates, sizes, layout, groups, determinism; its plugin and preview."""

from __future__ import annotations

import math

import pytest
import torch

from oodbench.api import Dataset, make_groups
from oodbench.builtin import colored_mnist as plugin
from oodbench.data.colored_mnist import (
    GREEN,
    RED,
    REPORT_SPEC,
    ColoredMNIST,
    ColoredMNISTSpec,
    EnvSlice,
    build_colored_mnist,
    color_digits,
)
from oodbench.data.mnist import MNIST, load_mnist
from oodbench.data.preview import preview, to_rgb

EXPECTED = {"train1": (0, 0.2, "train"), "train2": (20_000, 0.1, "train"), "test": (40_000, 0.9, "test")}


def within_binomial(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def real() -> MNIST:
    return load_mnist()


@pytest.fixture(scope="module")
def envs(real):
    return build_colored_mnist(real.train_x, real.train_y, seed=0)


def test_environments_follow_the_report(envs):
    assert [(e.name, e.role, len(e)) for e in envs] == [(n, r, 20_000) for n, (_, _, r) in EXPECTED.items()]
    for env in envs:
        assert env.x.shape == (20_000, 2, 28, 28) and env.x.dtype == torch.uint8
        assert env.y.dtype == env.attribute.dtype == env.group.dtype == torch.int64
        assert env.ceiling == 0.75


def test_label_noise_is_a_quarter_in_every_environment(envs, real):
    for env in envs:
        start = EXPECTED[env.name][0]
        clean = (real.train_y[start : start + len(env)] >= 5).long()
        noise = (env.y != clean).float().mean().item()
        assert within_binomial(noise, 0.25, len(env)), (env.name, noise)


def test_color_flip_rate_relative_to_the_noisy_label(envs):
    for env in envs:
        flip = (env.attribute != env.y).float().mean().item()
        assert within_binomial(flip, EXPECTED[env.name][1], len(env)), (env.name, flip)


def test_digit_is_painted_into_its_color_channel_only(envs, real):
    for env in envs:
        start = EXPECTED[env.name][0]
        digits = real.train_x[start : start + len(env)]
        red = env.attribute == RED
        assert red.any() and (~red).any()
        assert torch.equal(env.x[red, RED], digits[red]) and not env.x[red, GREEN].any()
        assert torch.equal(env.x[~red, GREEN], digits[~red]) and not env.x[~red, RED].any()


def test_groups_are_label_times_color(envs):
    for env in envs:
        assert torch.equal(env.group, env.y * 2 + env.attribute)
        counts = torch.bincount(env.group, minlength=4)
        assert len(counts) == 4 and int(counts.sum()) == len(env) and bool((counts > 0).all())


def test_same_seed_is_identical_and_another_seed_differs(envs, real):
    again = build_colored_mnist(real.train_x, real.train_y, seed=0)
    other = build_colored_mnist(real.train_x, real.train_y, seed=1)
    for a, b, c in zip(envs, again, other):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.attribute, b.attribute)
        assert not torch.equal(a.y, c.y) and not torch.equal(a.attribute, c.attribute)


def test_color_digits_layout():
    images = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], dtype=torch.uint8)
    colored = color_digits(images, torch.tensor([RED, GREEN]))
    assert colored.shape == (2, 2, 2, 2)
    assert torch.equal(colored[0, RED], images[0]) and not colored[0, GREEN].any()
    assert torch.equal(colored[1, GREEN], images[1]) and not colored[1, RED].any()


def test_spec_rows_drive_slices_and_flip_rates(real):
    spec = ColoredMNISTSpec(
        envs=(EnvSlice("clean", 100, 600, 0.0, "train"), EnvSlice("swapped", 0, 300, 1.0, "val")),
        label_noise=0.0,
    )
    clean, swapped = build_colored_mnist(real.train_x, real.train_y, seed=3, spec=spec)
    assert (len(clean), len(swapped), clean.ceiling, swapped.role) == (500, 300, 1.0, "val")
    assert torch.equal(clean.y, (real.train_y[100:600] >= 5).long())
    assert torch.equal(clean.attribute, clean.y) and torch.equal(swapped.attribute, 1 - swapped.y)


def test_too_few_images_is_an_error(real):
    with pytest.raises(ValueError, match="needs 60000 images"):
        build_colored_mnist(real.test_x, real.test_y, seed=0)


def test_dataset_plugin_registers_a_dataset_that_builds_the_report_construction(envs):
    registered = []
    plugin.oodbench_register_datasets(register=registered.append)
    (dataset,) = registered
    assert isinstance(dataset, ColoredMNIST) and isinstance(dataset, Dataset)
    assert dataset.name == "colored_mnist" and dataset.spec == REPORT_SPEC
    built = dataset.build(0, None)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.group, b.group) for a, b in zip(built, envs))
    assert {"env", "group", "attribute"} == set(dataset.provides)
    assert torch.equal(built[0].group, make_groups(built[0].y, built[0].attribute, dataset.num_classes))


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

    three = preview(envs, tmp_path / "sub" / "three.png", per_env=4)
    one = preview(envs[:1], tmp_path / "one.png", per_env=4)
    assert three.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (h3, w3, rgb), (h1, w1, _) = image.imread(three).shape, image.imread(one).shape
    assert rgb in (3, 4) and w3 == w1 and h3 > 2 * h1
