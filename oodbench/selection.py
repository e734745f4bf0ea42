"""Model-selection rules: which epoch of a training run a reported row comes from.

Each rule scores one epoch's metrics (split name -> EnvMetrics); the best
score wins, ties to the earliest epoch. ``last`` takes the final epoch,
``val`` the best mean accuracy on training-domain held-out data, ``oracle``
the best accuracy on the test environments' held-out part (an upper bound
no real deployment can use; the seed reports pick epochs this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # the CLI imports the rule names without paying for torch
    from oodbench.metrics import EnvMetrics
    from oodbench.splits import Split


@dataclass(frozen=True)
class SelectionRule:
    """Scores epochs from the splits whose (role, part) it names."""

    name: str
    description: str
    parts: tuple[tuple[str, str], ...]

    def score(self, epoch: int, metrics: Mapping[str, EnvMetrics], splits: Sequence[Split]) -> float:
        if not self.parts:
            return float(epoch)
        accs = [metrics[s.name].acc for s in splits if (s.role, s.part) in self.parts and s.name in metrics]
        if not accs:
            raise ValueError(f"selection {self.name!r}: no split with role/part in {self.parts}")
        return sum(accs) / len(accs)


RULES: dict[str, SelectionRule] = {
    "last": SelectionRule("last", "the final epoch", ()),
    "val": SelectionRule(
        "val", "best mean accuracy on the training environments' held-out data", (("train", "holdout"), ("val", "main"))
    ),
    "oracle": SelectionRule("oracle", "best accuracy on the test environments' held-out part", (("test", "holdout"),)),
}


class BestEpochs:
    """Follows every rule online so the trainer keeps only the checkpoints that can be selected."""

    def __init__(self, splits: Sequence[Split], rules: Mapping[str, SelectionRule] = RULES) -> None:
        self.splits = list(splits)
        self.rules = dict(rules)
        self.best: dict[str, tuple[float, int]] = {}

    def update(self, epoch: int, metrics: Mapping[str, EnvMetrics]) -> list[str]:
        """Record one epoch; returns the rules for which it is the new best."""
        improved = []
        for name, rule in self.rules.items():
            score = rule.score(epoch, metrics, self.splits)
            if name not in self.best or score > self.best[name][0]:
                self.best[name] = (score, epoch)
                improved.append(name)
        return improved

    def epochs(self) -> dict[str, int]:
        return {name: epoch for name, (_, epoch) in self.best.items()}
