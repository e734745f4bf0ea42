"""Name -> object lookup for one kind of plugin, with did-you-mean and duplicate detection."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterator

from oodbench.contracts import problem
from oodbench.errors import UsageError
from oodbench.search import check_space

SEARCHED_KINDS = ("algorithms", "backbones", "targets")


class DuplicateNameError(Exception):
    """A plugin registered a name another plugin already holds."""


class ContractError(Exception):
    """A plugin registered an object that lacks what its kind must have (``oodbench.contracts``)."""


@dataclass(frozen=True)
class Entry:
    """One registered object and who registered it."""

    name: str
    obj: Any
    plugin: str
    dist: str


class Registry:
    """The objects of one kind (``datasets``, ``backbones``, ...) by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, obj: Any, name: str | None, plugin: str, dist: str) -> Entry:
        """Add ``obj`` under ``name`` (default ``obj.name``); a taken name names both plugins."""
        name = name if name is not None else getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(f"{self.kind[:-1]} {obj!r} from {dist} has no name: set .name or pass name=")
        held = self._entries.get(name)
        if held is not None:
            raise DuplicateNameError(
                f"{self.kind[:-1]} {name!r} from {dist} is already registered by {held.dist} (plugin {held.plugin})"
            )
        broken = problem(self.kind, obj)
        if broken:
            raise ContractError(f"{self.kind[:-1]} {name!r} from {dist} {broken}")
        if self.kind in SEARCHED_KINDS:
            check_space(obj, f"{self.kind[:-1]} {name!r} from {dist}")
        entry = Entry(name=name, obj=obj, plugin=plugin, dist=dist)
        self._entries[name] = entry
        return entry

    def get(self, name: str, where: str = "") -> Any:
        """The object called ``name``; unknown names are a UsageError with suggestions."""
        return self.entry(name, where).obj

    def entry(self, name: str, where: str = "") -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(self.unknown_message(name, where)) from None

    def unknown_message(self, name: str, where: str = "") -> str:
        prefix = f"{where}: " if where else ""
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed = ", ".join(self.names()) or "(none installed)"
        return f"{prefix}unknown {self.kind[:-1]} {name!r}{hint} (allowed: {allowed})"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)
