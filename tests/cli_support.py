"""Helpers for tests that run the CLI in a subprocess (a module of its own: two conftest.py files exist)."""

from __future__ import annotations

import os

from oodbench.plugins import LOAD_PLUGINS_ENV


FIRST_PARTY = "oodbench-methods,oodbench-snn,oodbench-memristor"
"""The distributions under plugins/: the only installed plugins the suite loads, so a stranger's plugin in the
same environment (a warning line, another name) cannot change what a test sees."""


def subprocess_env(**overrides: str | None) -> dict[str, str]:
    """``os.environ`` for a CLI subprocess, loading only the first-party plugins; ``None`` removes a variable."""
    env = dict(os.environ)
    env[LOAD_PLUGINS_ENV] = FIRST_PARTY
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
