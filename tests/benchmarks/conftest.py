"""Benchmark fixtures: the two epoch timings of one run and the ratio printed after them.

Benchmarks are skipped in the normal suite (``--benchmark-skip`` in addopts);
run them with ``pytest tests/benchmarks --benchmark-only --benchmark-group-by=group``.
"""

from __future__ import annotations

import pytest

EPOCH_TIMES = pytest.StashKey[dict[str, dict[str, float]]]()


@pytest.fixture(scope="session")
def epoch_times(request: pytest.FixtureRequest) -> dict[str, dict[str, float]]:
    """Timings (min and mean seconds) of each epoch variant measured in this session, by name."""
    return request.config.stash.setdefault(EPOCH_TIMES, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    times = config.stash.get(EPOCH_TIMES, {})
    if "harness" not in times or "dataloader" not in times:
        return
    harness, reference = times["harness"], times["dataloader"]
    terminalreporter.section("epoch speed: DataLoader reference / harness (same run)")
    for stat in ("min", "mean"):
        terminalreporter.write_line(
            f"{stat:>4}: harness {harness[stat]:.2f} s, DataLoader {reference[stat]:.2f} s, "
            f"ratio {reference[stat] / harness[stat]:.2f}x"
        )
