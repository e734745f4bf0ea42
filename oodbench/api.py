"""The contract plugins code against: Environment, Batch, Task, Algorithm, Dataset, Target.

Plugins import this module (and ``oodbench.hookimpl``) and nothing deeper, so
everything a third-party method needs to know about the harness lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

ROLES = ("train", "val", "test", "source")
"""Environment roles: fit on ``train``, select on ``val``, report ``test``, ``source`` for DANN-like methods."""

METADATA = frozenset({"env", "group", "attribute", "source"})
"""What an algorithm may declare in ``requires``."""


@dataclass
class Environment:
    """One environment as whole tensors: never a per-sample Dataset on the hot path.

    ``x`` is uint8 (as built) or float in [0, 1] (as trained on), shape [N, C, H, W];
    ``y``, ``attribute`` and ``group`` are int64 [N]; ``group`` is
    ``y * num_attributes + attribute``. ``ceiling`` is the best accuracy any
    model can reach here (0.75 under 25 % label noise).
    """

    name: str
    role: str
    x: torch.Tensor
    y: torch.Tensor
    attribute: torch.Tensor
    group: torch.Tensor
    ceiling: float = 1.0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"environment {self.name!r}: role {self.role!r} not in {ROLES}")
        n = len(self.x)
        for part in ("y", "attribute", "group"):
            if len(getattr(self, part)) != n:
                raise ValueError(f"environment {self.name!r}: {part} has {len(getattr(self, part))} rows, x has {n}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: torch.Tensor, name: str | None = None, role: str | None = None) -> Environment:
        """The rows ``index`` of this environment (a held-out split, a color subset, ...)."""
        return Environment(
            name=name or self.name,
            role=role or self.role,
            x=self.x[index],
            y=self.y[index],
            attribute=self.attribute[index],
            group=self.group[index],
            ceiling=self.ceiling,
        )


def make_groups(y: torch.Tensor, attribute: torch.Tensor, num_attributes: int) -> torch.Tensor:
    """Group id of (label, spurious attribute): ``y * num_attributes + attribute``."""
    return y.long() * num_attributes + attribute.long()


@dataclass
class Batch:
    """One minibatch of one training environment, already on the training device."""

    x: torch.Tensor
    y: torch.Tensor
    env: torch.Tensor
    group: torch.Tensor
    attribute: torch.Tensor


@dataclass(frozen=True)
class Task:
    """What an algorithm may know about the problem before it sees data."""

    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    env_names: tuple[str, ...]
    attribute: str
    attribute_values: tuple[str, ...]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def num_envs(self) -> int:
        """Number of training environments (one minibatch each per ``update``)."""
        return len(self.env_names)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_values)

    @property
    def num_groups(self) -> int:
        return self.num_classes * self.num_attributes

    def group_name(self, group: int) -> str:
        """Readable label of a group id, e.g. ``y=1, color=red``."""
        y, a = divmod(group, self.num_attributes)
        return f"y={y}, {self.attribute}={self.attribute_values[a]}"


BackboneFactory = Callable[[], nn.Module]
"""A zero-argument callable the harness hands an algorithm; each call builds a fresh backbone."""


class Algorithm(nn.Module):
    """Base class of every algorithm plugin.

    The runner owns the loop: it calls ``setup(train)`` once, then ``update``
    with one ``Batch`` per training environment per step, and evaluates with
    ``predict`` every epoch. ``network()`` is what a hardware target converts.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backbone_factory: BackboneFactory, task: Task, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.task = task
        self.hparams = dict(hparams)

    def setup(self, train: Sequence[Environment]) -> None:
        """Optional stage before training (an ERM stage, statistics of the training data)."""

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        """One optimisation step; returns scalar statistics such as ``{"loss": ...}``."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a float batch ``x``."""
        raise NotImplementedError

    def network(self) -> nn.Module:
        """The plain module whose forward gives the logits, for hardware targets."""
        raise NotImplementedError


@runtime_checkable
class Dataset(Protocol):
    """A registered dataset: metadata plus ``build``.

    ``provides`` lists the metadata its environments carry (see ``METADATA``);
    the runner refuses algorithms whose ``requires`` is not a subset.
    """

    name: str
    num_classes: int
    attribute: str
    attribute_values: tuple[str, ...]
    provides: frozenset[str]

    def build(self, seed: int, data_dir: Path | None) -> list[Environment]: ...


@runtime_checkable
class Target(Protocol):
    """A hardware target, instantiated with its hyperparameters: ``Target(**hparams)``."""

    name: str
    defaults: dict[str, Any]

    def supports(self, backbone_name: str) -> bool: ...

    def deploy(self, network: nn.Module, calibration: torch.Tensor, seed: int) -> nn.Module: ...
