"""The plugin manager: built-in plugins, entry points, OODBENCH_LOAD_PLUGINS, per-plugin errors.

Entry points load once, lazily. A plugin that fails to import, declares an
unknown hook or registers a taken name is recorded with its distribution and
error; everything else keeps working. Registries are collected per kind on
first use by calling each plugin's hook with its own ``register`` callback, so
the core knows which distribution registered what.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pluggy

from oodbench import __version__, hookspecs
from oodbench.registry import Registry

ENTRY_POINT_GROUP = "oodbench"
LOAD_PLUGINS_ENV = "OODBENCH_LOAD_PLUGINS"
KINDS = ("datasets", "backbones", "algorithms", "targets")
BUILTIN_PLUGINS = (
    "oodbench.builtin.spec_datasets",
    "oodbench.builtin.cnn",
    "oodbench.builtin.lenet",
    "oodbench.builtin.mlp",
    "oodbench.builtin.erm",
    "oodbench.builtin.float_target",
)


@dataclass
class PluginRecord:
    """What ``oodbench plugins`` shows about one plugin."""

    name: str
    dist: str
    version: str
    target: str
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "target": self.target,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "loaded": self.loaded,
            "errors": self.errors,
        }


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (pluggy's validation messages span several), for warnings and tables."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}" if lines else type(exc).__name__


def normalize_dist(name: str) -> str:
    """PEP 503 normalisation, so ``OODBENCH_LOAD_PLUGINS=oodbench_methods`` matches ``oodbench-methods``."""
    return re.sub(r"[-_.]+", "-", name).lower()


class PluginSet:
    """A pluggy manager plus the records and registries built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("oodbench")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.warnings: list[str] = []
        self._registries: dict[str, Registry] = {}

    def add(self, plugin: object, record: PluginRecord) -> PluginRecord:
        """Register ``plugin``; a validation error is recorded, and the plugin left out.

        A name already in use is a ValueError: recording it would replace the
        holder's record, and the cleanup below (or ``remove``) would unregister the holder.
        """
        holder = self.records.get(record.name)
        if holder is not None or self.pm.get_plugin(record.name) is not None:
            raise ValueError(f"plugin name {record.name!r} is already taken" + (f" by {holder.dist}" if holder else ""))
        self.records[record.name] = record
        try:
            self.pm.register(plugin, name=record.name)
            self.pm.check_pending()
        except Exception as exc:  # pluggy raises ValueError or PluginValidationError
            if self.pm.get_plugin(record.name) is not None:
                self.pm.unregister(name=record.name)
            record.errors.append(_one_line(exc))
            return record
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self._registries.clear()
        return record

    def remove(self, name: str) -> None:
        """Unregister a plugin (tests add one for a single test and remove it in ``finally``)."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.records.pop(name, None)
        self._registries.clear()

    def registry(self, kind: str) -> Registry:
        """Everything of ``kind`` registered by loaded plugins, collected once."""
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {KINDS}")
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    def _collect(self, kind: str) -> Registry:
        registry = Registry(kind)
        caller = getattr(self.pm.hook, f"oodbench_register_{kind}")
        for impl in caller.get_hookimpls():
            record = self.records[impl.plugin_name]
            staged: list[tuple[Any, str | None]] = []

            def register(obj: Any, name: str | None = None, _staged: list = staged) -> None:
                _staged.append((obj, name))

            try:
                impl.function(**{arg: register for arg in impl.argnames})
                trial = Registry(kind)
                for entry in registry:
                    trial.add(entry.obj, entry.name, entry.plugin, entry.dist)
                for obj, name in staged:
                    trial.add(obj, name, record.name, record.dist)
            except Exception as exc:
                error = f"{caller.name}: {_one_line(exc)}"
                if error not in record.errors:  # registries are collected again after add/remove
                    record.errors.append(error)
                continue
            registry = trial
        return registry

    def failed(self) -> list[PluginRecord]:
        """Plugins that did not load, after collecting every kind so registration errors show too."""
        for kind in KINDS:
            self.registry(kind)
        return [r for r in self.records.values() if not r.loaded]

    def dist_of(self, kind: str, name: str) -> tuple[str, str]:
        """(distribution, version) of whoever registered ``name``, for the results store."""
        entry = self.registry(kind).entry(name)
        record = self.records[entry.plugin]
        return record.dist, record.version


def _allowed_dists() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {normalize_dist(part.strip()) for part in value.split(",") if part.strip()}


def _selected_entry_points() -> tuple[list[tuple[Any, str, str]], list[str]]:
    """The installed entry points ``OODBENCH_LOAD_PLUGINS`` selects, as (entry point, dist, version) in load
    order, and the warnings for names it gives that provide nothing; read from metadata, nothing imported."""
    allowed = _allowed_dists()
    seen: set[str] = set()
    selected = []
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(entry_points, key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist = ep.dist.name if ep.dist else "(unknown distribution)"
        version = ep.dist.version if ep.dist else "?"
        seen.add(normalize_dist(dist))
        if allowed is None or normalize_dist(dist) in allowed:
            selected.append((ep, dist, version))
    warnings = [f"{LOAD_PLUGINS_ENV} names {missing!r}, which provides no oodbench plugin"
                for missing in sorted((allowed or set()) - seen)]
    return selected, warnings


def _builtin_record(module: str) -> PluginRecord:
    return PluginRecord(module, "oodbench", __version__, module, builtin=True)


def installed_records() -> list[PluginRecord]:
    """What ``oodbench plugins`` lists without importing anything: built-ins, then the selected entry points
    (their hooks and load errors are known only once imported: ``load_plugins``)."""
    records = [_builtin_record(module) for module in BUILTIN_PLUGINS]
    return records + [PluginRecord(ep.name, dist, version, ep.value) for ep, dist, version in _selected_entry_points()[0]]


def load_plugins() -> PluginSet:
    """Built-in plugins by module path, then third-party entry points (filtered by the env var)."""
    plugins = PluginSet()
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        plugins.add(module, _builtin_record(module_name))
    selected, plugins.warnings = _selected_entry_points()
    for ep, dist, version in selected:
        record = PluginRecord(ep.name, dist, version, ep.value)
        if ep.name in plugins.records:
            record.errors.append(f"plugin name {ep.name!r} is already taken by {plugins.records[ep.name].dist}")
            plugins.records[f"{dist}:{ep.name}"] = record
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            record.errors.append(f"import failed: {_one_line(exc)}")
            plugins.records[ep.name] = record
            continue
        plugins.add(plugin, record)
    return plugins


_plugins: PluginSet | None = None


def get_plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _plugins
    if _plugins is None:
        _plugins = load_plugins()
    return _plugins


def reset_plugins() -> None:
    """Forget the loaded plugins (tests change the environment and reload)."""
    global _plugins
    _plugins = None
