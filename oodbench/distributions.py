"""Search distributions a plugin declares per hyperparameter: what random search draws, and what values are allowed.

A component's ``search_space`` maps hyperparameter names (keys of its
``defaults``) to one of these. The same object answers two questions: where
random search draws configurations 1..K-1 from (configuration 0 is the
defaults), and whether a value a user sets by hand is allowed. Numeric
distributions take ``limits=(low, high)`` when the allowed range is wider
than the searched one (a learning rate searched in [3e-5, 3e-3] may still be
set to 1e-2 by hand); without it the searched range is the allowed one.
Torch-free, so the CLI can describe spaces without paying for torch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Distribution(Protocol):
    """One hyperparameter's search distribution; ``searched`` is False for a range check without a search."""

    searched: bool

    def sample(self, rng: random.Random) -> Any: ...

    def contains(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


def finite_number(value: Any) -> bool:
    """An int or float that is not a bool, NaN or infinite (a value every range check can compare)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_limits(low: float, high: float, limits: tuple[float, float] | None) -> None:
    if limits is not None and not (len(limits) == 2 and all(map(finite_number, limits)) and limits[0] <= low
                                   and high <= limits[1]):
        raise ValueError(f"limits {limits!r} must be two numbers enclosing the searched range [{low}, {high}]")


def _allowed(limits: tuple[float, float] | None) -> str:
    return "" if limits is None else f", allowed [{limits[0]:g}, {limits[1]:g}]"


@dataclass(frozen=True)
class _Interval:
    """A continuous range ``[low, high]`` searched by ``sample``, allowed as ``limits`` (default the range)."""

    searched = True
    label = "interval"

    low: float
    high: float
    limits: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (finite_number(self.low) and finite_number(self.high) and self._ordered()):
            raise ValueError(f"{type(self).__name__} needs {self._needs()}, got {self.low!r}, {self.high!r}")
        _check_limits(self.low, self.high, self.limits)

    def _ordered(self) -> bool:
        return self.low < self.high

    def _needs(self) -> str:
        return "low < high"

    def contains(self, value: Any) -> bool:
        low, high = self.limits or (self.low, self.high)
        return finite_number(value) and low <= value <= high

    def describe(self) -> str:
        return f"{self.label} [{self.low:g}, {self.high:g}]" + _allowed(self.limits)


@dataclass(frozen=True)
class LogUniform(_Interval):
    """``exp(uniform(log low, log high))``: learning rates, penalty weights, anything that spans decades."""

    label = "log-uniform"

    def _ordered(self) -> bool:
        return 0 < self.low < self.high

    def _needs(self) -> str:
        return "0 < low < high"

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


@dataclass(frozen=True)
class Uniform(_Interval):
    """``uniform(low, high)``: fractions, temperatures."""

    label = "uniform"

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]``, both included; ``log=True`` draws it log-uniformly (widths, step counts)."""

    searched = True

    low: int
    high: int
    log: bool = False
    limits: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        if not ints or self.low > self.high or (self.log and self.low < 1):
            raise ValueError(f"IntRange needs integers low <= high (low >= 1 when log), got {self.low!r}, {self.high!r}")
        _check_limits(self.low, self.high, self.limits)

    def sample(self, rng: random.Random) -> int:
        if not self.log:
            return rng.randint(self.low, self.high)
        return min(max(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))), self.low), self.high)

    def contains(self, value: Any) -> bool:
        low, high = self.limits or (self.low, self.high)
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    def describe(self) -> str:
        return f"{'log-' if self.log else ''}int [{self.low}, {self.high}]" + _allowed(self.limits)


@dataclass(frozen=True)
class Choice:
    """One of a few values, uniformly."""

    searched = True

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        if not values:
            raise ValueError("Choice needs at least one value")
        object.__setattr__(self, "values", tuple(values))

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def contains(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) or (finite_number(value) and value == v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class OneOf:
    """Not searched (every configuration keeps the default), but a value set by hand must be one of these:
    a mode switch, whose change makes another variant of the method rather than another configuration."""

    values: tuple[Any, ...]
    searched = False

    def __init__(self, *values: Any) -> None:
        if not values:
            raise ValueError("OneOf needs at least one value")
        object.__setattr__(self, "values", tuple(values))

    def sample(self, rng: random.Random) -> Any:
        raise TypeError("OneOf hyperparameters are not searched")

    def contains(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return "fixed, one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Bounded:
    """Not searched (every configuration keeps the default), but a value set by hand must lie in [low, high]:
    widths and depths of a backbone, whose change makes another network rather than another configuration."""

    low: float
    high: float
    searched = False

    def __post_init__(self) -> None:
        if not (finite_number(self.low) and finite_number(self.high) and self.low <= self.high):
            raise ValueError(f"Bounded needs low <= high, got {self.low!r}, {self.high!r}")

    def sample(self, rng: random.Random) -> Any:
        raise TypeError("Bounded hyperparameters are not searched")

    def contains(self, value: Any) -> bool:
        return finite_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"fixed, allowed [{self.low:g}, {self.high:g}]"
