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

from oodbench.distributions import Bounded, Choice, Distribution, IntRange, LogUniform, OneOf, Uniform

__all__ = ["ROLES", "METADATA", "Environment", "make_groups", "Batch", "Task", "BackboneFactory", "Algorithm",
           "Backbone", "backbone_problem", "SingleModel", "pooled", "attribute_prior", "Dataset", "Target",
           "PerturbingTarget",
           "SearchSpace", "Distribution", "LogUniform", "Uniform", "IntRange", "Choice", "Bounded", "OneOf"]

SearchSpace = dict[str, Distribution]
"""Per hyperparameter (a key of ``defaults``), the distribution random search draws it from; the declared
range is also what a value set by hand must lie in (``Bounded`` and ``OneOf``: checked, never searched). Keys left out are
neither searched nor range-checked."""

ROLES = ("train", "val", "test", "source")
"""Environment roles: fit on ``train``, select on ``val``, report ``test``, ``source`` for DANN-like methods."""

METADATA = frozenset({"env", "group", "attribute", "source", "swap"})
"""What an algorithm may declare in ``requires``; ``swap`` means the dataset declares ``swap_channels``."""


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
    swap_channels: tuple[int, ...] | None = None
    source_names: tuple[str, ...] = ()

    def swap_attribute(self, x: torch.Tensor) -> torch.Tensor:
        """The same images with the binary spurious attribute reversed (e.g. red <-> green).

        Only defined where the dataset declares ``swap_channels``, the channel
        permutation that renders the other attribute value; methods that need
        it declare ``requires = {"swap"}`` and the runner skips other datasets.
        """
        if self.swap_channels is None:
            raise ValueError(f"dataset {self.dataset} declares no swap_channels; its attribute cannot be swapped")
        return x[:, list(self.swap_channels)]

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


@runtime_checkable
class Backbone(Protocol):
    """What a built backbone offers: calling it gives logits; ``featurizer`` maps inputs to ``n_features``
    features and ``classifier`` maps those to logits (DANN, CNC and RSC work between the two)."""

    featurizer: nn.Module
    classifier: nn.Module
    n_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def backbone_problem(network: object) -> str | None:
    """What a built backbone lacks of ``Backbone``, or None: checked where the harness builds one."""
    missing = [name for name in ("featurizer", "classifier") if not isinstance(getattr(network, name, None), nn.Module)]
    if not isinstance(getattr(network, "n_features", None), int):
        missing.append("n_features (int)")
    if not callable(network):
        missing.append("__call__")
    return f"lacks {', '.join(missing)} (see oodbench.api.Backbone)" if missing else None


class Algorithm(nn.Module):
    """Base class of every algorithm plugin.

    The runner owns the loop: it calls ``setup(train)`` once, then ``update``
    with one ``Batch`` per training environment per step, and evaluates with
    ``predict`` every epoch. An algorithm whose ``needs`` include ``source``
    gets, after those, one ``Batch`` per source environment
    (``task.source_names``; their ``env`` ids continue after the training
    environments'). ``network()`` is what a hardware target converts.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    search_space: ClassVar[SearchSpace] = {}
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backbone_factory: BackboneFactory, task: Task, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.task = task
        self.hparams = dict(hparams)

    @classmethod
    def needs(cls, hparams: dict[str, Any]) -> frozenset[str]:
        """Metadata this configuration needs; ``requires`` unless a mode changes it."""
        return frozenset(cls.requires)

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


class SingleModel(Algorithm):
    """One backbone trained with Adam on ``objective(batches)``: the common case.

    ERM is this with cross-entropy; a method that only changes the loss
    (IRM, GroupDRO, bi-loss, ...) overrides ``objective`` and returns the loss
    plus any statistics worth logging.
    """

    defaults = {"lr": 1e-3, "weight_decay": 0.0}
    search_space = {"lr": LogUniform(10 ** -4.5, 10 ** -2.5, limits=(1e-6, 1.0)),
                    "weight_decay": LogUniform(1e-6, 1e-3, limits=(0.0, 1.0))}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's own ``defaults`` and ``search_space`` extend the inherited ones, so declaring a method's
        hyperparameters never drops the optimiser's ``lr`` and ``weight_decay``."""
        super().__init_subclass__(**kwargs)
        for attribute in ("defaults", "search_space"):
            own = cls.__dict__.get(attribute)
            if own is not None:
                setattr(cls, attribute, {**getattr(super(cls, cls), attribute), **own})

    def __init__(self, backbone_factory: BackboneFactory, task: Task, hparams: dict[str, Any]) -> None:
        super().__init__(backbone_factory, task, hparams)
        self.model = backbone_factory()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )

    def objective(self, batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on this step, and extra statistics (may be empty)."""
        raise NotImplementedError

    def update(self, batches: Sequence[Batch]) -> dict[str, float]:
        loss, stats = self.objective(batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), **stats}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def network(self) -> nn.Module:
        return self.model


def pooled(batches: Sequence[Batch]) -> Batch:
    """All training environments' minibatches as one batch."""
    return Batch(*(torch.cat([getattr(b, part) for b in batches]) for part in ("x", "y", "env", "group", "attribute")))


def attribute_prior(train: Sequence[Environment], num_attributes: int) -> torch.Tensor:
    """P(E): the share of each spurious-attribute value over all training environments, measured."""
    counts = sum(torch.bincount(env.attribute.cpu(), minlength=num_attributes) for env in train)
    return counts.double() / counts.sum()


@runtime_checkable
class Dataset(Protocol):
    """A registered dataset: metadata plus ``build``.

    ``provides`` lists the metadata its environments carry (see ``METADATA``);
    the runner refuses algorithms whose ``requires`` is not a subset. A dataset
    with a binary attribute rendered as a channel permutation also sets
    ``swap_channels`` (and provides ``swap``); others leave it None.
    """

    name: str
    num_classes: int
    attribute: str
    attribute_values: tuple[str, ...]
    provides: frozenset[str]
    swap_channels: tuple[int, ...] | None

    def build(self, seed: int, data_dir: Path | None) -> list[Environment]: ...


@runtime_checkable
class Target(Protocol):
    """A hardware target, instantiated with its hyperparameters: ``Target(**hparams)``.

    ``deploy`` gets its own copy of the trained network and may change it.
    A stochastic target (devices that fail, drift or vary at random) declares
    ``draws`` (an int, usually 1) in ``defaults``: the harness deploys it that
    many times, with seeds from ``oodbench.draws.draw_seed``, keeps every
    draw and reports their mean and spread. A target may name the
    hyperparameter that is the time since programming as ``time_key``; the
    HTML report draws a sweep of it as accuracy against time.
    """

    name: str
    defaults: dict[str, Any]

    def supports(self, backbone_name: str) -> bool: ...

    def deploy(self, network: nn.Module, calibration: torch.Tensor, seed: int) -> nn.Module: ...


@runtime_checkable
class PerturbingTarget(Target, Protocol):
    """A target that can also say how one random chip would hold a weight, for hardware-aware training
    (``training.hardware_aware = NAME``, ``oodbench.hardware_aware``).

    ``perturb_weight`` returns ``layer``'s ``weight`` as a fresh draw of the
    devices would hold it (the same shape, drawn from ``generator``), or None
    for a layer the target does not put on devices. It must not change
    ``weight``; gradients pass it as the identity.
    """

    def perturb_weight(self, layer: nn.Module, weight: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor | None: ...
