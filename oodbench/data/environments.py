"""A validated spec + a seed + MNIST -> environments, deterministically.

Randomness comes from one ``torch.Generator`` in a fixed order: a label coin
and an attribute coin per pool image (so an image has one noisy label in
every environment that uses it, and an environment's coins do not depend on
the others), then the pool shuffle, then per-environment draws (uniform
attribute choices, random colors) in the order the environments are listed.
The coins are drawn per base set, training images first: for ``images =
"both"`` the label coins of the 60 000 training images, their attribute
coins, then the same two for the 10 000 test images. A training image thus
gets the same coins whether or not the test images join the pool, and the
first two draws are exactly the seed report's, so the ``colored_mnist`` spec
reproduces its environments byte for byte while taking its source from the
test images.
"""

from __future__ import annotations

import torch

from oodbench.api import Environment, make_groups
from oodbench.data.colors import PALETTE, RANDOM, as_seen, contrast, named, project, random_rgb
from oodbench.data.mnist import MNIST
from oodbench.data.render import apply_transforms, blend, downsample
from oodbench.data.spec import EnvSpec, Relation, Spec


def base_sets(images: str, mnist: MNIST) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images [N, 28, 28], digits) of each MNIST set in the pool: train, test or both (train first)."""
    train, test = (mnist.train_x, mnist.train_y), (mnist.test_x, mnist.test_y)
    return {"train": [train], "test": [test], "both": [train, test]}[images]


def draw_coins(sizes: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and attribute coins of each base set in turn, concatenated so positions index the pool."""
    label, attribute = [], []
    for n in sizes:
        label.append(torch.rand(n, generator=generator))
        attribute.append(torch.rand(n, generator=generator))
    return torch.cat(label), torch.cat(attribute)


def build_environments(spec: Spec, seed: int, mnist: MNIST) -> list[Environment]:
    """The environments of ``spec`` for ``seed``, images uint8 [N, C, size, size]."""
    sets = base_sets(spec.images, mnist)
    images, digits = torch.cat([x for x, _ in sets]), torch.cat([y for _, y in sets])
    n = len(images)
    generator = torch.Generator().manual_seed(seed)
    label_coin, attribute_coin = draw_coins([len(x) for x, _ in sets], generator)
    order = torch.arange(n)
    if spec.shuffle is not None:
        start, stop = spec.shuffle
        order[start:stop] = start + torch.randperm(stop - start, generator=generator)
    above = digits >= spec.label.threshold
    clean = (above if spec.label.positive == "above" else ~above).long()
    environments = []
    for env in spec.environments:
        index = order[env.start:env.stop:env.step]
        y = clean[index] ^ (label_coin[index] < env.noise).long()
        attribute = _attribute(env.relation, spec.attribute.values, y, attribute_coin[index], generator)
        x = _render(spec, env, downsample(images[index], spec.size), attribute, generator)
        environments.append(Environment(
            name=env.name,
            role=env.role,
            x=x,
            y=y,
            attribute=attribute,
            group=make_groups(y, attribute, len(spec.attribute.values)),
            ceiling=env.ceiling,
        ))
    return environments


def _attribute(relation: Relation, values: tuple[str, ...], y: torch.Tensor, coin: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
    """Attribute index (into the dataset's values) of every sample of one environment."""
    index_of = torch.tensor([values.index(v) for v in relation.values])
    if relation.kind == "label":
        return index_of[y ^ (coin < relation.flip).long()]
    if relation.kind == "fixed":
        return index_of[torch.zeros_like(y)]
    return index_of[torch.randint(0, len(index_of), y.shape, generator=generator)]


def _render(spec: Spec, env: EnvSpec, digits: torch.Tensor, attribute: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
    """Draw each digit with its attribute color and the environment's other color, then the transforms."""
    n, values = len(digits), spec.attribute.values
    table = torch.tensor([PALETTE.get(v, (0, 0, 0)) for v in values])
    attribute_rgb = table[attribute]
    attribute_random = torch.tensor([v == RANDOM for v in values])[attribute]
    other_random = torch.full((n,), env.other_color == RANDOM)
    if env.other_color == RANDOM:
        other_rgb = torch.zeros(n, 3, dtype=torch.long)
    else:
        other_rgb = named(env.other_color).expand(n, 3).clone()
    _draw_random(attribute_rgb, attribute_random, other_rgb, other_random, spec, env, generator)
    if spec.attribute.render == "digit":
        foreground, background = attribute_rgb, other_rgb
    else:
        foreground, background = other_rgb, attribute_rgb
    x = blend(digits, project(foreground, spec.layout), project(background, spec.layout))
    return apply_transforms(x, env.transforms)


def _draw_random(attribute_rgb: torch.Tensor, attribute_random: torch.Tensor, other_rgb: torch.Tensor,
                 other_random: torch.Tensor, spec: Spec, env: EnvSpec, generator: torch.Generator) -> None:
    """Fill the random colors in place, redrawing a pair until it is at least ``min_contrast`` apart as seen."""
    gray = "grayscale" in env.transforms
    pending = attribute_random | other_random
    while pending.any():
        rows = pending.nonzero().squeeze(1)
        fresh_attribute, fresh_other = random_rgb(len(rows), generator), random_rgb(len(rows), generator)
        attribute_rgb[rows] = torch.where(attribute_random[rows, None], fresh_attribute, attribute_rgb[rows])
        other_rgb[rows] = torch.where(other_random[rows, None], fresh_other, other_rgb[rows])
        seen = contrast(as_seen(attribute_rgb[rows], spec.layout, gray), as_seen(other_rgb[rows], spec.layout, gray))
        pending[rows[seen >= spec.attribute.min_contrast]] = False
