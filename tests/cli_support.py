"""Helpers for tests that run the CLI in a subprocess (a module of its own: two conftest.py files exist)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class CliCall:
    """One ``oodbench ARGV`` for :func:`run_in_one_interpreter`: its environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


_DRIVER = """
import contextlib, io, json, os, sys, traceback
from oodbench.cli import main
from oodbench.plugins import reset_plugins
results = []
for call in json.load(sys.stdin):
    os.environ.clear()
    os.environ.update(call["env"])
    os.chdir(call["cwd"])
    reset_plugins()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(call["argv"])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = -1
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
sys.stdout.write("\\n" + json.dumps(results) + "\\n")
"""


def run_in_one_interpreter(calls: list[CliCall], timeout: float = 300) -> list[CliResult]:
    """Run each call through ``oodbench.cli.main`` in turn, in one fresh interpreter.

    A fresh process per command costs seconds (torch and the plugins import each time); one process for many
    commands pays that once. Each call gets its own environment, working directory, plugin set and captured
    streams; an exception escaping ``main`` shows up as its traceback in ``stderr`` with return code -1.
    """
    payload = [{"argv": c.argv, "env": c.env, "cwd": str(c.cwd)} for c in calls]
    driver = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(payload), env=subprocess_env(),
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert driver.returncode == 0, driver.stderr[-4000:]
    return [CliResult(**r) for r in json.loads(driver.stdout.strip().splitlines()[-1])]
