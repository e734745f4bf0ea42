"""Dataset specs: validation messages, rendering, provides, the on-disk cache and the spec catalog.

The shipped datasets' statistics are in test_specs_datasets.py; the CLI in
a subprocess in test_specs_cli.py. Here a tiny spec (900 images) keeps
every build cheap.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from oodbench.api import Dataset
from oodbench.cli import main
from oodbench.data import catalog, envcache
from oodbench.data.catalog import PATH_ENV, SpecDataset, UnusableSpec, load_catalog, provides
from oodbench.data.environments import build_environments, draw_coins
from oodbench.data.mnist import MNIST, load_mnist
from oodbench.data.render import apply_transforms, blend, downsample
from oodbench.data.spec import load_spec
from oodbench.data.spec_fields import SpecError
from oodbench.plugins import reset_plugins

TINY = """\
description = "tiny"
images = "train"
layout = "red_green"
swap_channels = [1, 0]

[label]
threshold = 5
noise = 0.25

[attribute]
name = "color"
values = ["red", "green"]
render = "digit"

[[environments]]
name = "train"
role = "train"
stop = 600
attribute = { relation = "label", flip = 0.1 }

[[environments]]
name = "test"
role = "test"
start = 600
stop = 900
attribute = { relation = "label", flip = 0.9 }
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def edit(old: str, new: str, text: str = TINY) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def real() -> MNIST:
    return load_mnist()


# Each malformed spec: (the broken text, the field named, a fragment of what is allowed).
MALFORMED = {
    "syntax": (edit("stop = 600", "stop = = 600"), r"invalid TOML: .*\(at line 18, column \d+\)", r"TOML 1\.0"),
    "missing-field": (edit('layout = "red_green"\n', ""), r"field 'layout' is missing",
                      r"'red_green', 'rgb', 'gray'"),
    "wrong-type": (edit("threshold = 5", 'threshold = "five"'), r"field 'label\.threshold' is \"five\", a string",
                   r"an integer in \[1, 9\]"),
    "probability": (edit("flip = 0.1", "flip = 1.5"), r"field 'environments\[0\]\.attribute\.flip' is 1\.5",
                    r"a number in \[0, 1\]"),
    "unknown-color": (edit('values = ["red", "green"]', 'values = ["red", "grean"]'),
                      r"field 'attribute\.values\[1\]' is \"grean\"", r"'green'.*'random'"),
    "unknown-layout": (edit('layout = "red_green"', 'layout = "cmyk"'), r"field 'layout' is \"cmyk\"",
                       r"'red_green', 'rgb', 'gray'"),
    "unknown-role": (edit('role = "train"', 'role = "training"'), r"field 'environments\[0\]\.role' is \"training\"",
                     r"'train', 'val', 'test', 'source'"),
    "unknown-transform": (edit("start = 600\n", 'start = 600\ntransforms = ["blur"]\n'),
                          r"field 'environments\[1\]\.transforms\[0\]' is \"blur\"", r"'grayscale'"),
    "overlap": (edit("start = 600", "start = 500"), r"field 'environments\[1\]\.start' .*shares images with 'train'",
                r"disjoint slices"),
    "out-of-range": (edit("stop = 900", "stop = 70_000"), r"field 'environments\[1\]\.stop' is 70000",
                     r"\[start \+ 1, 60000\]"),
    "no-test": (edit('role = "test"', 'role = "val"'), r"field 'environments' has no environment with role 'test'",
                r"at least one 'train' and one 'test'"),
    "swap-not-permutation": (edit("swap_channels = [1, 0]", "swap_channels = [0, 0]"),
                             r"field 'swap_channels' is \[0, 0\], not a permutation", r"\[0, 1\]"),
    "swap-not-exact": (edit('render = "digit"', 'render = "digit"\nbackground = "purple"',
                            edit('layout = "red_green"', 'layout = "rgb"', edit("[1, 0]", "[1, 0, 2]"))),
                       r"field 'environments\[0\]\.background' is purple, which swap_channels", r"leaves as it is"),
    "unknown-field": (edit('render = "digit"', 'render = "digit"\ncolour = "red"'),
                      r"field 'attribute\.colour' is not a known field", r"name, values, render"),
    "invisible-digit": (edit('render = "digit"', 'render = "digit"\nbackground = "white"',
                             edit('layout = "red_green"\nswap_channels = [1, 0]', 'layout = "gray"')),
                        r"field 'environments\[0\]\.background' draws a red digit on white, contrast 0\.00",
                        r"min_contrast"),
    "duplicate-env": (edit('name = "test"', 'name = "train"'), r"field 'environments\[1\]\.name' repeats 'train'",
                      r"one environment only"),
    "source-leaks-test": (TINY + '\n[[environments]]\nname = "src"\nrole = "source"\nstop = 900\n'
                          'attribute = { relation = "uniform" }\n',
                          r"field 'environments\[2\]\.start' source slice 0:900:1 shares images with train, test",
                          r"pool positions no train, val or test environment uses"),
    "source-reuses-train": (TINY + '\n[[environments]]\nname = "src"\nrole = "source"\nstart = 100\nstop = 200\n'
                            'attribute = { relation = "uniform" }\n',
                            r"field 'environments\[2\]\.start' source slice 100:200:1 shares images with train \(",
                            r"pool positions no train, val or test environment uses"),
    "label-needs-two": (edit('values = ["red", "green"]', 'values = ["red", "green", "blue"]',
                             edit("swap_channels = [1, 0]\n", "")),
                        r"field 'environments\[0\]\.attribute\.values' is missing", r"needed because"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_spec_fails_in_one_line_naming_file_field_and_allowed(tmp_path, case):
    text, field, allowed = MALFORMED[case]
    path = write(tmp_path, "broken", text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert re.search(field, message), message
    assert re.search(r"\(allowed: .*" + allowed, message), message


@pytest.fixture
def spec_path(tmp_path, monkeypatch):
    """A user spec directory on ``OODBENCH_DATASETS_PATH``, plugins reloaded before and after."""
    directory = tmp_path / "specs"
    directory.mkdir()
    monkeypatch.setenv(PATH_ENV, str(directory))
    reset_plugins()
    yield directory
    reset_plugins()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_cli_exits_2_with_the_one_line_message(spec_path, tmp_path, capsys, case):
    """``oodbench.cli.main`` in process; test_specs_cli.py runs the same through a real subprocess."""
    path = write(spec_path, "broken", MALFORMED[case][0])
    code = main(["data", "preview", "broken", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"oodbench: error: {path}: ") and "(allowed: " in err
    assert not (tmp_path / "x.png").exists()


def test_a_broken_spec_is_listed_as_unusable_and_hides_nothing(spec_path, capsys):
    write(spec_path, "broken", MALFORMED["probability"][0])
    write(spec_path, "tiny_user", TINY)
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^broken .*UNUSABLE: .*broken\.toml: field 'environments\[0\]\.attribute\.flip'", out, re.M)
    for name in ("tiny_user", "colored_mnist", "background_shift", "digit_color_shift", "colored_mnist_irm"):
        assert re.search(rf"^{name} ", out, re.M), name


def test_catalog_first_name_wins_and_bad_path_entries_warn(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write(first, "tiny", TINY)
    write(second, "other", 'name = "tiny"\n' + TINY)
    write(second, "bad", "images = 3\n")
    catalog = load_catalog([first, second, tmp_path / "missing"])
    names = {d.name: d for d in catalog.datasets}
    assert set(names) == {"tiny", "bad"}
    assert isinstance(names["tiny"], SpecDataset) and names["tiny"].spec.path == first / "tiny.toml"
    assert isinstance(names["bad"], UnusableSpec) and isinstance(names["bad"], Dataset)
    with pytest.raises(SpecError, match=r"bad\.toml: field 'images' is 3, an integer \(allowed: 'train', 'test'"):
        names["bad"].build(0, None)
    assert any("other.toml" in w and "already defined" in w for w in catalog.warnings)
    assert any("missing" in w and "not a directory" in w for w in catalog.warnings)


def test_the_readme_example_is_a_valid_spec(tmp_path):
    readme = (Path(__file__).parents[1] / "datasets_spec" / "README.md").read_text()
    example = readme.split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    spec = load_spec(write(tmp_path, "example", example))
    assert [e.role for e in spec.environments] == ["train", "test"]


def test_defaults_and_per_environment_overrides(tmp_path):
    text = edit('role = "test"\n', 'role = "test"\nnoise = 0.0\nceiling = 0.9\nbackground = "blue"\n',
                edit('layout = "red_green"\nswap_channels = [1, 0]', 'layout = "rgb"'))
    spec = load_spec(write(tmp_path, "spec", text))
    train, test = spec.environments
    assert spec.name == "spec" and spec.size == 28 and spec.shuffle is None and spec.label.positive == "above"
    assert (train.noise, train.ceiling, train.other_color, train.step) == (0.25, 0.75, "black", 1)
    assert (test.noise, test.ceiling, test.other_color) == (0.0, 0.9, "blue")


def test_provides_is_honest(tmp_path):
    def provided(text: str) -> set[str]:
        return set(provides(load_spec(write(tmp_path, "p", text))))

    assert provided(TINY) == {"env", "attribute", "group", "swap"}
    no_swap = edit("swap_channels = [1, 0]\n", "")
    assert provided(no_swap) == {"env", "attribute", "group"}
    random_train = edit('values = ["red", "green"]', 'values = ["red", "green", "random"]',
                        edit('flip = 0.1 }', 'flip = 0.1, values = ["red", "random"] }',
                             edit('flip = 0.9 }', 'flip = 0.9, values = ["red", "green"] }', no_swap)))
    assert provided(random_train) == {"env"}
    source = no_swap + '\n[[environments]]\nname = "src"\nrole = "source"\nstart = 900\nstop = 1000\nnoise = 0.0\n' \
        'attribute = { relation = "fixed", value = "red" }\n'
    assert provided(source) == {"env", "attribute", "group", "source"}


def formula(digits: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    ink = digits.long()[:, None]
    return ((ink * fg[:, :, None, None] + (255 - ink) * bg[:, :, None, None] + 127) // 255).to(torch.uint8)


@pytest.mark.parametrize("palette", ["bytes", "any"])
def test_blend_matches_the_rounding_formula(real, palette):
    generator = torch.Generator().manual_seed(5)
    digits = real.train_x[:300]
    if palette == "bytes":
        fg, bg = (255 * torch.randint(0, 2, (300, 3), generator=generator) for _ in range(2))
    else:
        fg, bg = (torch.randint(0, 256, (300, 3), generator=generator) for _ in range(2))
    assert torch.equal(blend(digits, fg, bg), formula(digits, fg, bg))


def test_red_on_black_is_the_mnist_bytes_and_transforms(real):
    digits = real.train_x[:50]
    x = blend(digits, torch.tensor([[255, 0]]).expand(50, 2), torch.zeros(50, 2, dtype=torch.long))
    assert torch.equal(x[:, 0], digits) and not x[:, 1].any()
    gray = apply_transforms(x, ("grayscale",))
    assert torch.equal(gray[:, 0], digits) and torch.equal(gray[:, 1], digits)
    assert torch.equal(downsample(digits, 14), digits[:, ::2, ::2]) and downsample(digits, 14).shape[1:] == (14, 14)
    with pytest.raises(ValueError, match="blur"):
        apply_transforms(x, ("blur",))


def test_adding_the_test_images_to_the_pool_changes_no_training_image_draw(tmp_path, real):
    """``images = "both"`` draws the training images' coins first, so their environments stay byte-identical
    (what lets colored_mnist take its source from MNIST's test images without changing train1/train2/test)."""
    alone = load_spec(write(tmp_path, "alone", TINY))
    both = load_spec(write(tmp_path, "both", edit('images = "train"', 'images = "both"')))
    for seed in (0, 1):
        for a, b in zip(build_environments(alone, seed, real), build_environments(both, seed, real)):
            assert all(torch.equal(getattr(a, p), getattr(b, p)) for p in ("x", "y", "attribute", "group")), a.name


def test_coins_are_drawn_per_base_set_train_first():
    first, second = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    label, attribute = draw_coins([6, 3], first)
    train_label, train_attribute, test_label, test_attribute = (torch.rand(n, generator=second) for n in (6, 6, 3, 3))
    assert torch.equal(label, torch.cat([train_label, test_label]))
    assert torch.equal(attribute, torch.cat([train_attribute, test_attribute]))


def test_cache_is_read_back_and_a_spec_edit_invalidates_it(tmp_path, real, monkeypatch):
    path = write(tmp_path / "specs", "tiny", TINY)
    cache = tmp_path / "cache"
    dataset = SpecDataset(load_spec(path), cache_dir=cache)
    built = dataset.build(0, None)
    stored = dataset.cache_path(0)
    assert stored.parent == cache and re.fullmatch(r"tiny-[0-9a-f]{16}-seed0\.pt", stored.name)
    assert [p.name for p in cache.iterdir()] == [stored.name]  # written atomically: no temp file left

    def no_rebuild(*args):
        raise AssertionError("the verified cache should have been read, not rebuilt")

    with monkeypatch.context() as patch:
        patch.setattr(catalog, "build_environments", no_rebuild)
        again = dataset.build(0, None)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in zip(again, built))

    reworded = SpecDataset(load_spec(write(tmp_path / "specs", "tiny", edit('"tiny"', '"reworded"'))), cache)
    assert reworded.cache_path(0) == stored  # the description decides no tensor
    edited = SpecDataset(load_spec(write(tmp_path / "specs", "tiny", edit("flip = 0.1", "flip = 0.3"))), cache)
    assert edited.cache_path(0) != stored and dataset.cache_path(1) != stored
    fresh = edited.build(0, None)
    assert torch.equal(fresh[0].y, built[0].y) and not torch.equal(fresh[0].attribute, built[0].attribute)
    assert len(list(cache.iterdir())) == 2


def test_unreadable_cache_is_rebuilt(tmp_path, real):
    dataset = SpecDataset(load_spec(write(tmp_path, "tiny", TINY)), cache_dir=tmp_path / "cache")
    built = dataset.build(3, None)
    dataset.cache_path(3).write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="discarding unreadable dataset cache"):
        rebuilt = dataset.build(3, None)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.group, b.group) for a, b in zip(built, rebuilt))
    assert torch.load(dataset.cache_path(3), weights_only=True)["environments"][0]["name"] == "train"


def test_cache_key_covers_seed_spec_and_format(monkeypatch):
    key = envcache.cache_key({"a": 1}, 0)
    assert key != envcache.cache_key({"a": 2}, 0) and key != envcache.cache_key({"a": 1}, 1)
    monkeypatch.setattr(envcache, "FORMAT_VERSION", envcache.FORMAT_VERSION + 1)
    assert envcache.cache_key({"a": 1}, 0) != key
