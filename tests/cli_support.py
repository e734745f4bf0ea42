"""Helpers for tests that run the CLI in a subprocess (a module of its own: two conftest.py files exist)."""

from __future__ import annotations

import os

from oodbench.plugins import LOAD_PLUGINS_ENV


def subprocess_env(**overrides: str | None) -> dict[str, str]:
    """``os.environ`` for a CLI subprocess, ``OODBENCH_LOAD_PLUGINS`` unset; ``None`` removes a variable."""
    env = dict(os.environ)
    env.pop(LOAD_PLUGINS_ENV, None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
