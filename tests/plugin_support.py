"""A plugin object registered for the length of a test: the toy targets of the draws and hardware-aware tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from oodbench.plugins import PluginRecord, get_plugins


@contextlib.contextmanager
def added_plugin(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` in the current plugin set as ``name`` (distribution ``test-NAME``), removed on exit."""
    plugins = get_plugins()
    plugins.add(plugin, PluginRecord(name, f"test-{name}", "0", "tests"))
    try:
        yield
    finally:
        plugins.remove(name)
