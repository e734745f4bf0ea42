"""Spec files -> datasets: the shipped ``datasets_spec/`` plus every directory on ``OODBENCH_DATASETS_PATH``.

A spec that fails validation must not hide the others: it becomes an
``UnusableSpec`` under its file name, listed with its error as description,
and using it raises that error (the CLI's one-line exit 2). Problems no
dataset can stand for (a path entry that is no directory, a name claimed
twice) are returned as warnings.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import oodbench
from oodbench.api import Environment
from oodbench.data.colors import RANDOM
from oodbench.data.envcache import cache_file, cache_key, load_or_build, spec_hash
from oodbench.data.environments import build_environments
from oodbench.data.mnist import data_home, load_mnist
from oodbench.data.spec import Spec, load_spec
from oodbench.data.spec_fields import SpecError

PATH_ENV = "OODBENCH_DATASETS_PATH"
SHIPPED_PACKAGE = "oodbench.datasets_spec"


def provides(spec: Spec) -> frozenset[str]:
    """Metadata the environments really carry.

    ``attribute`` and ``group`` only when every training sample's attribute
    is a named value (a ``random`` color is no label of the sample);
    ``source`` with a source environment; ``swap`` with ``swap_channels``.
    """
    out = {"env"}
    train = [env for env in spec.environments if env.role == "train"]
    if all(RANDOM not in env.relation.values for env in train):
        out |= {"attribute", "group"}
    if any(env.role == "source" for env in spec.environments):
        out.add("source")
    if spec.swap_channels is not None:
        out.add("swap")
    return frozenset(out)


class SpecDataset:
    """A dataset defined by a spec file; environments are built per seed and cached on disk."""

    num_classes = 2

    def __init__(self, spec: Spec, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.attribute = spec.attribute.name
        self.attribute_values = spec.attribute.values
        self.provides = provides(spec)
        self.swap_channels = spec.swap_channels
        self.cache_dir = cache_dir
        self.spec_hash = spec_hash(spec.normalized())
        self.__doc__ = spec.description or f"dataset spec {spec.path.name}"

    def cache_path(self, seed: int) -> Path:
        """Where the environments of ``seed`` are kept (default: ``<data home>/datasets``)."""
        return cache_file(self.cache_dir or data_home() / "datasets", self.name, self.spec.normalized(), seed)

    def build(self, seed: int, data_dir: Path | None) -> list[Environment]:
        """The environments for ``seed`` (``data_dir``: a user's MNIST IDX directory)."""
        return load_or_build(self.cache_path(seed), cache_key(self.spec.normalized(), seed),
                             lambda: build_environments(self.spec, seed, load_mnist(data_dir)))


class UnusableSpec:
    """Stands in for a spec that failed validation: listed, but building it raises the validation error."""

    num_classes = 2
    attribute = ""
    attribute_values: tuple[str, ...] = ()
    provides: frozenset[str] = frozenset()
    swap_channels = None

    def __init__(self, name: str, error: SpecError) -> None:
        self.name = name
        self.error = error
        self.unusable = str(error)
        """Why no run may use this dataset: the runner refuses it before anything trains."""
        self.__doc__ = f"UNUSABLE: {error}"

    def build(self, seed: int, data_dir: Path | None) -> list[Environment]:
        raise self.error


@dataclass
class Catalog:
    """Every dataset the spec directories define, usable or not."""

    datasets: list[SpecDataset | UnusableSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def shipped_dir() -> Path:
    """The specs that come with oodbench: the ``oodbench.datasets_spec`` package data, or, in a source tree
    run without installing, the top-level ``datasets_spec/`` next to the package."""
    try:
        return Path(next(iter(importlib.import_module(SHIPPED_PACKAGE).__path__)))
    except ModuleNotFoundError:
        return Path(oodbench.__file__).resolve().parent.parent / "datasets_spec"


def spec_dirs() -> list[Path]:
    """Shipped specs first, then ``OODBENCH_DATASETS_PATH`` in order (os.pathsep-separated)."""
    extra = [Path(part) for part in os.environ.get(PATH_ENV, "").split(os.pathsep) if part.strip()]
    return [shipped_dir(), *extra]


def load_catalog(dirs: list[Path] | None = None) -> Catalog:
    """Every ``*.toml`` of ``dirs`` (default ``spec_dirs()``) as a dataset; the first file claiming a name keeps it."""
    catalog = Catalog()
    owners: dict[str, Path] = {}
    for directory in spec_dirs() if dirs is None else dirs:
        if not directory.is_dir():
            catalog.warnings.append(f"{PATH_ENV} names {directory}, which is not a directory")
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                dataset: SpecDataset | UnusableSpec = SpecDataset(load_spec(path))
            except SpecError as error:
                dataset = UnusableSpec(path.stem, error)
            if dataset.name in owners:
                catalog.warnings.append(f"{path}: dataset name {dataset.name!r} is already defined by "
                                        f"{owners[dataset.name]}; this file is ignored")
                continue
            owners[dataset.name] = path
            catalog.datasets.append(dataset)
    return catalog
