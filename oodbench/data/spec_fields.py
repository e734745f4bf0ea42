"""Typed reads from a parsed TOML table, each failure one line naming the file, the field and what is allowed.

Spec validation reads every value through a ``Table`` so that no field can
be consumed without its type and range being checked, and ``finish`` turns
every key nobody asked for (a typo, a field of another relation) into an
error instead of silence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NoReturn, Sequence

from oodbench.errors import UsageError

REQUIRED: Any = object()
"""Default marker: the field must be present."""


class SpecError(UsageError):
    """A dataset spec that cannot be used; the message is one line: file, field, allowed values."""


def show(value: Any) -> str:
    """A value as a user wrote it, on one short line."""
    if isinstance(value, dict):
        return "a table"
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    """The TOML type of a parsed value with its article ("an integer"), for wrong-type messages."""
    for python, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                         (list, "an array"), (dict, "a table")):
        if isinstance(value, python):
            return name
    return type(value).__name__


class Table:
    """One TOML table of a spec file, read field by field."""

    def __init__(self, file: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.file = file
        self.data = data
        self.prefix = prefix
        self.asked: list[str] = []

    def name(self, key: str) -> str:
        """The dotted field name users see, e.g. ``environments[2].attribute.flip``."""
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str, allowed: str) -> NoReturn:
        raise SpecError(f"{self.file}: field '{self.name(key)}' {problem} (allowed: {allowed})")

    def _given(self, key: str, default: Any, allowed: str) -> bool:
        """Whether ``key`` is in the table; a missing required key fails here."""
        if key not in self.asked:
            self.asked.append(key)
        if key not in self.data and default is REQUIRED:
            self.fail(key, "is missing", allowed)
        return key in self.data

    def _wrong(self, key: str, value: Any, allowed: str) -> NoReturn:
        self.fail(key, f"is {show(value)}, {kind_of(value)}", allowed)

    def string(self, key: str, default: Any = REQUIRED, pattern: str | None = None,
               choices: Sequence[str] | None = None, allowed: str = "a string") -> str:
        if choices is not None:
            allowed = ", ".join(repr(c) for c in choices)
        elif pattern is not None:
            allowed = f"a string matching {pattern}"
        if not self._given(key, default, allowed):
            return default
        value = self.data[key]
        if not isinstance(value, str):
            self._wrong(key, value, allowed)
        if choices is not None and value not in choices:
            self.fail(key, f"is {show(value)}", allowed)
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(key, f"is {show(value)}", allowed)
        return value

    def integer(self, key: str, low: int, high: int | None = None, default: Any = REQUIRED,
                allowed: str | None = None) -> int:
        allowed = allowed or (f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}")
        if not self._given(key, default, allowed):
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(key, value, allowed)
        if value < low or (high is not None and value > high):
            self.fail(key, f"is {value}", allowed)
        return value

    def number(self, key: str, low: float, high: float, default: Any = REQUIRED, allowed: str | None = None) -> float:
        allowed = allowed or f"a number in [{low:g}, {high:g}]"
        if not self._given(key, default, allowed):
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(key, value, allowed)
        if not low <= value <= high:
            self.fail(key, f"is {value:g}", allowed)
        return float(value)

    def probability(self, key: str, default: Any = REQUIRED) -> float:
        return self.number(key, 0.0, 1.0, default, "a probability, a number in [0, 1]")

    def strings(self, key: str, choices: Sequence[str], default: Any = REQUIRED, allowed: str | None = None,
                unique: bool = True, min_items: int = 0) -> tuple[str, ...]:
        """An array of strings, each one of ``choices``."""
        allowed = allowed or f"an array of {', '.join(repr(c) for c in choices)}"
        if not self._given(key, default, allowed):
            return default
        value = self.data[key]
        if not isinstance(value, list):
            self._wrong(key, value, allowed)
        if len(value) < min_items:
            self.fail(key, f"has {len(value)} items", f"{allowed}; at least {min_items}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in choices:
                what = f"is {show(item)}" + ("" if isinstance(item, str) else f", {kind_of(item)}")
                self.fail(f"{key}[{i}]", what, ", ".join(repr(c) for c in choices))
        if unique and len(set(value)) != len(value):
            twice = next(v for v in value if value.count(v) > 1)
            self.fail(key, f"names {show(twice)} twice", f"{allowed}, each at most once")
        return tuple(value)

    def integers(self, key: str, default: Any = REQUIRED, allowed: str = "an array of integers") -> tuple[int, ...]:
        if not self._given(key, default, allowed):
            return default
        value = self.data[key]
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            self._wrong(key, value, allowed)
        return tuple(value)

    def value(self, key: str, default: Any, allowed: str) -> Any:
        """The raw value, for a field that accepts more than one type; the caller checks it."""
        return self.data[key] if self._given(key, default, allowed) else default

    def table(self, key: str, allowed: str) -> Table:
        self._given(key, REQUIRED, allowed)
        value = self.data[key]
        if not isinstance(value, dict):
            self._wrong(key, value, allowed)
        return Table(self.file, value, f"{self.name(key)}.")

    def tables(self, key: str, allowed: str) -> list[Table]:
        """An array of tables (``[[key]]``), at least one."""
        self._given(key, REQUIRED, allowed)
        value = self.data[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            what = "an empty array" if value == [] else f"{show(value)}, {kind_of(value)}"
            self.fail(key, f"is {what}", allowed)
        return [Table(self.file, item, f"{self.name(key)}[{i}].") for i, item in enumerate(value)]

    def finish(self) -> None:
        """Every key of the table must have been asked for: an unknown field is a typo, never ignored."""
        for key in self.data:
            if key not in self.asked:
                self.fail(key, "is not a known field here", ", ".join(self.asked) or "no fields")
