"""Test helpers for plugin authors: run a plugin end to end on real MNIST bytes at a budget of seconds."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from oodbench.data.catalog import PATH_ENV, shipped_dir
from oodbench.plugins import reset_plugins

SMALL_PER_ENV = 500
"""Images per environment in a small copy of a shipped spec: a run of seconds that still goes through every part."""


def small_spec_text(shipped: str = "colored_mnist", per_env: int = SMALL_PER_ENV) -> str:
    """The shipped spec ``shipped`` with every environment cut to its first ``per_env`` images.

    Everything else (colours, noise, flips, transforms, roles) is the shipped construction, so a test of the
    harness's mechanics sees the dataset a user runs, only smaller.
    """
    text = (shipped_dir() / f"{shipped}.toml").read_text()
    head, *blocks = re.split(r"^(?=\[\[environments\]\])", text, flags=re.MULTILINE)
    cut = []
    for block in blocks:
        start = int(tomllib.loads(block)["environments"][0]["start"])
        cut.append(re.sub(r"^stop\s*=\s*[\d_]+", f"stop = {start + per_env}", block, count=1, flags=re.MULTILINE))
    head = re.sub(r'^description\s*=\s*"(.*)"', rf'description = "\1 ({per_env} images per environment)"', head,
                  count=1, flags=re.MULTILINE)
    return head + "".join(cut)


def write_small_spec(directory: Path, name: str, shipped: str = "colored_mnist") -> str:
    """Write the small copy of ``shipped`` as ``directory/NAME.toml`` and return the dataset name it registers.

    Point ``OODBENCH_DATASETS_PATH`` (``oodbench.data.catalog.PATH_ENV``) at
    ``directory`` and reload the plugins to make it visible to the CLI.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.toml").write_text(small_spec_text(shipped))
    return name


@contextlib.contextmanager
def small_dataset(directory: Path, name: str, shipped: str = "colored_mnist") -> Iterator[str]:
    """The small copy of ``shipped`` registered as ``name`` for the duration: the spec written to ``directory``,
    ``OODBENCH_DATASETS_PATH`` pointed at it and the plugins reloaded; all undone on exit."""
    write_small_spec(directory, name, shipped)
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


def small_colored_mnist(directory: Path, name: str) -> contextlib.AbstractContextManager[str]:
    """:func:`small_dataset` of ``colored_mnist``, the dataset most plugin tests want."""
    return small_dataset(directory, name, "colored_mnist")
