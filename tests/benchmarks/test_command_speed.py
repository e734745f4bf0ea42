"""How long the commands a user types most take, against ``import torch`` measured in the same run.

Each benchmark starts a fresh interpreter, as a user's shell does. Issue 17 asks that ``report``,
``plugins`` and ``leaderboard check`` cost less than a quarter of ``python -c "import torch"``, and
``list algorithms`` less than ``import torch, snntorch`` plus one second; the ratios are printed after
the module's benchmarks and stored in ``extra_info``. Nothing here asserts on time.

Run with ``pytest tests/benchmarks/test_command_speed.py --benchmark-only --benchmark-group-by=group``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import subprocess_env
from store_support import one_finished_cell

import oodbench

GROUP = "commands-vs-import-torch"
ROUNDS = 5
TIMES = pytest.StashKey[dict]()
BASELINE = Path(oodbench.__file__).parent / "leaderboards" / "guard.json"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory with one finished cell and its plugin versions (no training needed to read it)."""
    return one_finished_cell(tmp_path_factory.mktemp("speed") / "run")


def _python(*args: str) -> None:
    subprocess.run([sys.executable, *args], env=subprocess_env(), capture_output=True, check=False, timeout=120)


COMMANDS = {
    "import torch": lambda run: _python("-c", "import torch"),
    "import torch, snntorch": lambda run: _python("-c", "import torch, snntorch"),
    "report": lambda run: _python("-m", "oodbench.cli", "report", str(run)),
    "leaderboard check": lambda run: _python("-m", "oodbench.cli", "leaderboard", "check", str(run),
                                             "--baseline", str(BASELINE)),
    "plugins": lambda run: _python("-m", "oodbench.cli", "plugins"),
    "list algorithms": lambda run: _python("-m", "oodbench.cli", "list", "algorithms"),
}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_command(benchmark, request, run_dir, name):
    benchmark.pedantic(COMMANDS[name], args=(run_dir,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    request.config.stash.setdefault(TIMES, {})[name] = benchmark.stats.stats.min


def summarize(config, write) -> None:
    times = config.stash.get(TIMES, {})
    if "import torch" not in times:
        return
    torch_s = times["import torch"]
    for name in ("report", "leaderboard check", "plugins"):
        if name in times:
            write(f"{name}: {times[name]:.2f} s = {times[name] / torch_s:.2f} x import torch ({torch_s:.2f} s); "
                  f"asked: < 0.25 x")
    if "list algorithms" in times and "import torch, snntorch" in times:
        limit = times["import torch, snntorch"] + 1.0
        write(f"list algorithms: {times['list algorithms']:.2f} s against import torch, snntorch + 1 s = "
              f"{limit:.2f} s")
