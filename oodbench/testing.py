"""Test helpers for plugin authors: run a plugin end to end on real MNIST bytes at a budget of seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oodbench.data.catalog import PATH_ENV
from oodbench.plugins import reset_plugins

SMALL_COLORED_MNIST = """
description = "colored_mnist, 500 images per environment: a quick end-to-end run"
images = "both"
size = 28
layout = "red_green"
swap_channels = [1, 0]

[label]
threshold = 5
positive = "above"
noise = 0.25

[attribute]
name = "color"
values = ["red", "green"]
render = "digit"
background = "black"

[[environments]]
name = "train1"
role = "train"
start = 0
stop = 500
attribute = { relation = "label", flip = 0.2 }

[[environments]]
name = "train2"
role = "train"
start = 500
stop = 1_000
attribute = { relation = "label", flip = 0.1 }

[[environments]]
name = "test"
role = "test"
start = 40_000
stop = 40_500
attribute = { relation = "label", flip = 0.9 }

[[environments]]
name = "source"
role = "source"
start = 60_000
stop = 61_000
noise = 0.0
transforms = ["grayscale"]
attribute = { relation = "uniform" }
"""
"""``colored_mnist``'s construction on 500 images per environment (and a grayscale ``source`` of 1 000 MNIST test images)."""


def write_small_colored_mnist(directory: Path, name: str) -> str:
    """Write the small ColoredMNIST spec as ``directory/NAME.toml`` and return the dataset name it registers.

    Point ``OODBENCH_DATASETS_PATH`` (``oodbench.data.catalog.PATH_ENV``) at
    ``directory`` and reload the plugins to make it visible to the CLI.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.toml").write_text(SMALL_COLORED_MNIST)
    return name


@contextmanager
def small_colored_mnist(directory: Path, name: str) -> Iterator[str]:
    """The small ColoredMNIST registered as ``name`` for the duration: the spec written to ``directory``,
    ``OODBENCH_DATASETS_PATH`` pointed at it and the plugins reloaded; all undone on exit."""
    write_small_colored_mnist(directory, name)
    previous = os.environ.get(PATH_ENV)
    os.environ[PATH_ENV] = str(directory)
    reset_plugins()
    try:
        yield name
    finally:
        if previous is None:
            os.environ.pop(PATH_ENV, None)
        else:
            os.environ[PATH_ENV] = previous
        reset_plugins()
