"""Dataset spec files (TOML) -> validated ``Spec`` objects; the schema is datasets_spec/README.md.

Validation happens here, once, so construction can trust every value: a
spec that parses is one that builds. Each failure is a ``SpecError`` whose
single line names the file, the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from oodbench.api import ROLES
from oodbench.data.colors import LAYOUTS, PALETTE, RANDOM, as_seen, contrast, named, project
from oodbench.data.render import TRANSFORMS
from oodbench.data.spec_fields import SpecError, Table, show

IMAGES = {"train": 60_000, "test": 10_000, "both": 70_000}
"""Base image pools: MNIST's training set, its test set, or both (training images first)."""

SIZES = (28, 14)
POSITIVE = ("above", "below")
RENDERS = ("digit", "background")
RELATIONS = ("label", "fixed", "uniform")
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
COLORS = (*PALETTE, RANDOM)
MAX_MIN_CONTRAST = 0.5
"""Above this, redrawing random color pairs until they differ enough could take very long."""


@dataclass(frozen=True)
class Label:
    """Binary label from the digit: 1 for digits ``above`` (>=) or ``below`` (<) the threshold, then noise."""

    threshold: int
    positive: str
    noise: float


@dataclass(frozen=True)
class Attribute:
    """The spurious attribute: a color drawn on the digit or on the background."""

    name: str
    values: tuple[str, ...]
    render: str
    min_contrast: float


@dataclass(frozen=True)
class Relation:
    """How one environment's attribute depends on its label.

    ``label``: ``values[y]``, switched to the other value with probability
    ``flip``; ``fixed``: always ``values[0]``; ``uniform``: any of ``values``.
    """

    kind: str
    values: tuple[str, ...]
    flip: float = 0.0


@dataclass(frozen=True)
class EnvSpec:
    """One environment: a slice of the (shuffled) image pool and how it is labelled and drawn.

    ``other_color`` is the color not carried by the attribute: the background
    when the attribute colors the digit, the digit's when it colors the background.
    """

    name: str
    role: str
    start: int
    stop: int
    step: int
    relation: Relation
    noise: float
    ceiling: float
    other_color: str
    transforms: tuple[str, ...]

    def positions(self) -> range:
        return range(self.start, self.stop, self.step)


@dataclass(frozen=True)
class Spec:
    """A whole validated dataset spec."""

    name: str
    description: str
    path: Path
    images: str
    size: int
    layout: str
    shuffle: tuple[int, int] | None
    label: Label
    attribute: Attribute
    environments: tuple[EnvSpec, ...]
    swap_channels: tuple[int, ...] | None

    def normalized(self) -> dict[str, Any]:
        """Everything that decides the built tensors, as plain data (the cache key hashes it)."""
        data = dataclasses.asdict(self)
        del data["path"], data["description"]
        return data


def load_spec(path: Path) -> Spec:
    """Read and validate one spec file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: invalid TOML: {error} "
                        "(allowed: TOML 1.0 syntax, see datasets_spec/README.md)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the spec: {error}") from None
    return parse_spec(data, path)


def parse_spec(data: dict[str, Any], path: Path) -> Spec:
    """Validate parsed TOML ``data`` of file ``path`` field by field, then across fields."""
    top = Table(path, data)
    name = top.string("name", default=path.stem, pattern=NAME)
    description = top.string("description", default="")
    images = top.string("images", choices=tuple(IMAGES))
    size = top.integer("size", 14, 28, default=28, allowed="28 or 14")
    if size not in SIZES:
        top.fail("size", f"is {size}", "28 or 14")
    layout = top.string("layout", choices=tuple(LAYOUTS))
    pool = IMAGES[images]
    shuffle = _shuffle(top, pool)
    label = _label(top.table("label", "a table with threshold, positive, noise"))
    attribute_table = top.table("attribute", "a table with name, values, render, background or digit, min_contrast")
    attribute, default_other = _attribute(attribute_table)
    envs = tuple(_environment(t, pool, label, attribute, default_other)
                 for t in top.tables("environments", "one or more [[environments]] tables"))
    swap = top.integers("swap_channels", default=None, allowed="a permutation of the layout's channel indices")
    top.finish()
    spec = Spec(name, description, path, images, size, layout, shuffle, label, attribute, envs, swap)
    _check_environments(top, spec)
    _check_contrast(top, spec)
    if swap is not None:
        _check_swap(top, spec)
    return spec


def _shuffle(top: Table, pool: int) -> tuple[int, int] | None:
    allowed = f"true, false, or [start, stop] with 0 <= start < stop <= {pool}"
    value = top.value("shuffle", False, allowed)
    if isinstance(value, bool):
        return (0, pool) if value else None
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not 0 <= value[0] < value[1] <= pool):
        top.fail("shuffle", f"is {show(value)}", allowed)
    return value[0], value[1]


def _label(table: Table) -> Label:
    threshold = table.integer("threshold", 1, 9)
    positive = table.string("positive", default="above", choices=POSITIVE)
    noise = table.probability("noise", default=0.0)
    table.finish()
    return Label(threshold, positive, noise)


def _attribute(table: Table) -> tuple[Attribute, str]:
    """The attribute and the default color of whatever it does not color."""
    name = table.string("name", pattern=r"[A-Za-z_][A-Za-z0-9_]*")
    values = table.strings("values", COLORS, min_items=1,
                           allowed=f"an array of color names ({', '.join(COLORS)})")
    render = table.string("render", choices=RENDERS)
    other_key, other_default = ("background", "black") if render == "digit" else ("digit", "white")
    other = table.string(other_key, default=other_default, choices=COLORS)
    min_contrast = table.number("min_contrast", 0.0, MAX_MIN_CONTRAST, default=0.3)
    table.finish()
    return Attribute(name, values, render, min_contrast), other


def _environment(table: Table, pool: int, label: Label, attribute: Attribute, default_other: str) -> EnvSpec:
    name = table.string("name", pattern=NAME)
    role = table.string("role", choices=ROLES)
    start = table.integer("start", 0, pool - 1, default=0)
    stop = table.integer("stop", start + 1, pool,
                         allowed=f"an integer in [start + 1, {pool}] (the pool has {pool} images)")
    step = table.integer("step", 1, default=1)
    noise = table.probability("noise", default=label.noise)
    ceiling = table.probability("ceiling", default=1.0 - noise)
    other_key = "background" if attribute.render == "digit" else "digit"
    other = table.string(other_key, default=default_other, choices=COLORS)
    transforms = table.strings("transforms", TRANSFORMS, default=())
    relation = _relation(table.table("attribute", "a table with relation and its fields"), attribute)
    table.finish()
    return EnvSpec(name, role, start, stop, step, relation, noise, ceiling, other, transforms)


def _relation(table: Table, attribute: Attribute) -> Relation:
    kind = table.string("relation", choices=RELATIONS)
    values = attribute.values
    choices = f"values of attribute.values ({', '.join(values)})"
    if kind == "label":
        chosen = table.strings("values", values, default=values if len(values) == 2 else None,
                               allowed=f"two {choices}")
        if chosen is None:
            table.fail("values", "is missing", f"two {choices}, needed because attribute.values has {len(values)}")
        if len(chosen) != 2:
            table.fail("values", f"has {len(chosen)} items", f"two {choices}: for label 0 and label 1")
        flip = table.probability("flip")
        table.finish()
        return Relation(kind, chosen, flip)
    if kind == "fixed":
        value = table.string("value", choices=values)
        table.finish()
        return Relation(kind, (value,))
    chosen = table.strings("values", values, default=values, min_items=1, allowed=f"an array of {choices}")
    table.finish()
    return Relation(kind, chosen)


def _check_environments(top: Table, spec: Spec) -> None:
    """Unique names, train and test roles present, no image in two of train/val/test, sources off all three."""
    pool = IMAGES[spec.images]
    seen: dict[str, int] = {}
    for i, env in enumerate(spec.environments):
        if env.name in seen:
            top.fail(f"environments[{i}].name", f"repeats {env.name!r} of environments[{seen[env.name]}]",
                     "a name used by one environment only")
        seen[env.name] = i
    roles = {env.role for env in spec.environments}
    for needed in ("train", "test"):
        if needed not in roles:
            top.fail("environments", f"has no environment with role {needed!r}",
                     "at least one 'train' and one 'test' environment")
    owner = torch.full((pool,), -1, dtype=torch.long)
    for i, env in enumerate(spec.environments):
        if env.role == "source":
            continue
        positions = torch.tensor(env.positions())
        taken = owner[positions]
        if (taken >= 0).any():
            other = spec.environments[int(taken[taken >= 0][0])]
            top.fail(f"environments[{i}].start",
                     f"slice {env.start}:{env.stop}:{env.step} of {env.name!r} shares images with {other.name!r} "
                     f"({other.start}:{other.stop}:{other.step})",
                     "disjoint slices for train, val and test environments")
        owner[positions] = i
    _check_sources(top, spec, owner)


def _check_sources(top: Table, spec: Spec, owner: torch.Tensor) -> None:
    """A source slice shares no image with train, val or test (``owner``: environment index per pool position,
    -1 where unused), so a DANN-style method never sees a digit it is trained or evaluated on."""
    for i, env in enumerate(spec.environments):
        if env.role != "source":
            continue
        taken = owner[torch.tensor(env.positions())]
        held = [spec.environments[int(j)].name for j in taken[taken >= 0].unique()]
        if held:
            top.fail(f"environments[{i}].start", f"source slice {env.start}:{env.stop}:{env.step} shares images "
                     f"with {', '.join(held)}", "a source slice of pool positions no train, val or test "
                     "environment uses")


def _check_contrast(top: Table, spec: Spec) -> None:
    """Every fixed digit/background pair an environment can draw must be visible in its layout."""
    other_key = "background" if spec.attribute.render == "digit" else "digit"
    for i, env in enumerate(spec.environments):
        if env.other_color == RANDOM:
            continue
        gray = "grayscale" in env.transforms
        other = as_seen(named(env.other_color), spec.layout, gray)
        for value in env.relation.values:
            if value == RANDOM:
                continue
            seen = contrast(as_seen(named(value), spec.layout, gray), other).item()
            if seen < spec.attribute.min_contrast:
                pair = (value, env.other_color) if spec.attribute.render == "digit" else (env.other_color, value)
                view = f"layout {spec.layout!r}" + (" after grayscale" if gray else "")
                top.fail(f"environments[{i}].{other_key}",
                         f"draws a {pair[0]} digit on {pair[1]}, contrast {seen:.2f} in {view}",
                         f"colors with contrast >= attribute.min_contrast = {spec.attribute.min_contrast:g}")


def _check_swap(top: Table, spec: Spec) -> None:
    """``swap_channels`` must turn each attribute value's rendering into the other's, exactly."""
    swap, channels = spec.swap_channels, LAYOUTS[spec.layout]
    if sorted(swap) != list(range(channels)):
        top.fail("swap_channels", f"is {list(swap)}, not a permutation of the {channels} channels of layout "
                 f"{spec.layout!r}", f"an ordering of {list(range(channels))}")
    values = spec.attribute.values
    if len(values) != 2 or RANDOM in values:
        top.fail("swap_channels", f"is declared for attribute values {list(values)}",
                 "two named attribute values whose renderings a channel permutation exchanges")
    first, second = (project(named(v), spec.layout)[0] for v in values)
    if not (torch.equal(first[list(swap)], second) and torch.equal(second[list(swap)], first)):
        top.fail("swap_channels",
                 f"{list(swap)} does not exchange {values[0]} and {values[1]} in layout {spec.layout!r}",
                 "a permutation that maps one value's channels onto the other's")
    for i, env in enumerate(spec.environments):
        if "grayscale" in env.transforms:
            continue
        other = project(named(env.other_color), spec.layout)[0] if env.other_color != RANDOM else None
        if other is None or not torch.equal(other[list(swap)], other):
            key = "background" if spec.attribute.render == "digit" else "digit"
            top.fail(f"environments[{i}].{key}", f"is {env.other_color}, which swap_channels {list(swap)} changes",
                     "a color the permutation leaves as it is, or no swap_channels")
