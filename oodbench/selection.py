"""Model selection over (configuration, checkpoint), as DomainBed defines it, then statistics over trials.

Two levels. While a network trains, ``BestEpochs`` follows three
checkpoints of that one run (``CHECKPOINTS``): the last epoch, the epoch
best on training-domain validation data, and the epoch best on the test
environments' held-out part. A report then applies a ``SelectionRule`` to
every trial separately: it takes one of those checkpoints from each searched
configuration and chooses the configuration whose checkpoint scores best on
the rule's splits (``last`` always takes configuration 0, the defaults).
Ties go to the earliest epoch and the lowest configuration. Scores come from
the float network's curves, so every hardware target of a trial reports the
same chosen network. Torch-free: reports and the CLI import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oodbench.metrics import EnvMetrics
    from oodbench.splits import Split

VALIDATION = (("train", "val"), ("val", "main"))
"""Training-domain validation: the train environments' ``val`` parts and whole ``val``-role environments."""
TEST_HOLDOUT = (("test", "holdout"),)
"""Test-domain validation: the test environments' held-out parts (never the reported ``main`` parts)."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint of one training run: the last epoch (no parts) or the epoch best on ``parts``."""

    name: str
    parts: tuple[tuple[str, str], ...]

    def score(self, epoch: int, metrics: Mapping[str, EnvMetrics], splits: Sequence[Split]) -> float:
        if not self.parts:
            return float(epoch)
        return part_mean({s.name: (s.role, s.part) for s in splits}, {k: m.acc for k, m in metrics.items()},
                         self.parts, self.name)


CHECKPOINTS: dict[str, Checkpoint] = {
    "last": Checkpoint("last", ()),
    "best_val": Checkpoint("best_val", VALIDATION),
    "best_test": Checkpoint("best_test", TEST_HOLDOUT),
}


def part_mean(roles: Mapping[str, tuple[str, str]], accs: Mapping[str, float], parts: Sequence[tuple[str, str]],
              what: str) -> float:
    """Mean accuracy over the splits whose (role, part) is in ``parts``; a run without them cannot be scored."""
    values = [acc for name, acc in accs.items() if roles.get(name) in parts]
    if not values:
        raise ValueError(f"{what}: no split with role/part in {list(parts)}")
    return sum(values) / len(values)


class BestEpochs:
    """Follows every checkpoint online so the trainer keeps only the states a rule can pick."""

    def __init__(self, splits: Sequence[Split], checkpoints: Mapping[str, Checkpoint] = CHECKPOINTS) -> None:
        self.splits = list(splits)
        self.checkpoints = dict(checkpoints)
        self.best: dict[str, tuple[float, int]] = {}

    def update(self, epoch: int, metrics: Mapping[str, EnvMetrics]) -> list[str]:
        """Record one epoch; returns the checkpoints for which it is the new best."""
        improved = []
        for name, checkpoint in self.checkpoints.items():
            score = checkpoint.score(epoch, metrics, self.splits)
            if name not in self.best or score > self.best[name][0]:
                self.best[name] = (score, epoch)
                improved.append(name)
        return improved

    def epochs(self) -> dict[str, int]:
        return {name: epoch for name, (_, epoch) in self.best.items()}


@dataclass(frozen=True)
class SelectionRule:
    """Which checkpoint of each configuration, and on which splits the configuration is chosen (None: the
    defaults, configuration 0)."""

    name: str
    description: str
    checkpoint: str
    parts: tuple[tuple[str, str], ...] | None


RULES: dict[str, SelectionRule] = {
    "val": SelectionRule("val", "training-domain validation: per configuration the checkpoint best on the training "
                         "environments' validation parts, then the configuration best there", "best_val", VALIDATION),
    "oracle": SelectionRule("oracle", "test-domain validation (DomainBed's oracle): each configuration's last "
                            "checkpoint, the configuration best on the test environments' held-out part",
                            "last", TEST_HOLDOUT),
    "oracle_epoch": SelectionRule("oracle_epoch", "the seed reports' rule: the checkpoint and the configuration best "
                                  "on the test environments' held-out part (early-stops on test data)",
                                  "best_test", TEST_HOLDOUT),
    "last": SelectionRule("last", "the default configuration's last checkpoint", "last", None),
}


@dataclass(frozen=True)
class Candidate:
    """One configuration of one trial: its training's chosen epochs and, per epoch, accuracy per split."""

    config: int
    key: Any
    epochs: Mapping[str, int]
    accs: Mapping[int, Mapping[str, float]]
    roles: Mapping[str, tuple[str, str]]


@dataclass(frozen=True)
class Choice:
    """What a rule picked in one trial: the candidate, its epoch and the score that won."""

    candidate: Candidate
    epoch: int
    score: float | None


def choose(rule: SelectionRule, candidates: Iterable[Candidate]) -> Choice | None:
    """The (configuration, checkpoint) ``rule`` picks among one trial's configurations; None if it has none to
    pick (``last`` without configuration 0, or no configuration with the rule's checkpoint)."""
    best: Choice | None = None
    for candidate in sorted(candidates, key=lambda c: c.config):
        epoch = candidate.epochs.get(rule.checkpoint)
        if epoch is None:
            continue
        if rule.parts is None:
            if candidate.config == 0:
                return Choice(candidate, epoch, None)
            continue
        score = part_mean(candidate.roles, candidate.accs[epoch], rule.parts, rule.name)
        if best is None or score > best.score:
            best = Choice(candidate, epoch, score)
    return best
