"""Running the guard matrix with and without a mutation, and checking the result against the committed baseline.

The mutations (``mutations.py``) load as the entry point of a test-only distribution, ``oodbench-mutations``,
written into a fake site directory: every process that loads plugins applies the one ``OODBENCH_MUTATION``
names, pool workers included, and the plugin registers nothing, so the cells' recorded plugins stay the
baseline's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import FIRST_PARTY, subprocess_env
from mutations import MUTATION_ENV

import oodbench
from oodbench.leaderboard import FAILING, Move, check
from oodbench.plugins import LOAD_PLUGINS_ENV

BASELINE = Path(oodbench.__file__).parent / "leaderboards" / "guard.json"
HERE = Path(__file__).parent
DIST = "oodbench-mutations"


def write_site(root: Path) -> Path:
    """A site directory holding only the ``oodbench-mutations`` dist-info (the module is found on ``HERE``)."""
    info = root / "oodbench_mutations-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[oodbench]\nmutations = mutations\n")
    return root


@dataclass
class GuardRun:
    run_dir: Path
    returncode: int
    run_text: str
    check_code: int
    check_text: str
    moves: list[Move]

    def failing(self) -> list[Move]:
        return [m for m in self.moves if m.status in FAILING]


def run_guard(site: Path, out: Path, select: list[str], mutation: str | None, threads: int,
              executor: list[str] | None = None) -> GuardRun:
    """``oodbench run --matrix guard SELECT`` under ``mutation`` (None: the methods as shipped) with
    ``OMP_NUM_THREADS=threads`` (the matrix's own ``threads`` decides what each training uses), then
    ``oodbench leaderboard check --partial`` of it against the committed baseline."""
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env[LOAD_PLUGINS_ENV] = f"{FIRST_PARTY},{DIST}"
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop(MUTATION_ENV, None)
    if mutation:
        env[MUTATION_ENV] = mutation
    command = [sys.executable, "-m", "oodbench.cli"]
    ran = subprocess.run([*command, "run", "--matrix", "guard", *select, *(executor or []), "--out", str(out)],
                         env=env, capture_output=True, text=True)
    checked = subprocess.run([*command, "leaderboard", "check", str(out), "--baseline", str(BASELINE), "--partial"],
                             env=env, capture_output=True, text=True)
    moves = check(out, BASELINE, partial=True).moves
    return GuardRun(out, ran.returncode, ran.stdout + ran.stderr, checked.returncode, checked.stdout + checked.stderr,
                    moves)


@dataclass(frozen=True)
class Case:
    """A mutation, the cells it reaches (``oodbench run`` axis options) and the rows that must fail."""

    mutation: str
    select: tuple[str, ...]
    broken: frozenset[tuple[str, str, str]]
    """(backbone, algorithm, target) of every row the mutation breaks; the other rows it runs must pass."""

    def param(self) -> object:
        return pytest.param(self, id=self.mutation)


def algorithm_case(name: str) -> Case:
    return Case(name, ("-a", name), frozenset({("mlp", name, "float")}))


HARDWARE_CASES = (
    Case("rsc", ("-b", "cnn", "-a", "rsc"), frozenset({("cnn", "rsc", "float")})),
    Case("rsc_plus", ("-b", "cnn", "-a", "rsc_plus"), frozenset({("cnn", "rsc_plus", "float")})),
    Case("snn", ("-b", "snn", "-a", "erm"), frozenset({("snn", "erm", "float")})),
    Case("memristor", ("-b", "mlp", "-a", "erm", "-t", "float", "-t", "memristor"),
         frozenset({("mlp", "erm", "memristor")})),
    Case("memristor_nonidealities",
         ("-b", "mlp", "-a", "erm", "-t", "float", "-t", "memristor_faults", "-t", "memristor_aging",
          "-t", "memristor_states"),
         frozenset({("mlp", "erm", t) for t in ("memristor_faults", "memristor_aging", "memristor_states")})),
)
METHOD_CASES = tuple(algorithm_case(name) for name in (
    "irm", "vrex", "group_dro", "bi_loss", "adjust", "bi_model", "dann", "cnc", "augment", "vae_irm"))


def row_of(move: Move) -> tuple[str, str, str]:
    _, backbone, algorithm, target, *_ = move.entry.split("/")
    return backbone, algorithm, target


def assert_detected(case: Case, result: GuardRun) -> None:
    """The check exits 1, every broken row has a metric out of its interval, and no other row does."""
    print(result.check_text)  # pytest -rP shows each case's table: docs/reports.md's mutation table
    assert result.returncode == 0, result.run_text
    assert result.check_code == 1, f"{case.mutation} went undetected:\n{result.check_text}"
    failing = {row_of(m) for m in result.failing()}
    assert failing == set(case.broken), result.check_text
