"""Benchmark fixtures: the timings of one run, and each group's DataLoader/harness ratio printed after them.

Benchmarks are skipped in the normal suite (``--benchmark-skip`` in addopts);
run them with ``pytest tests/benchmarks --benchmark-only --benchmark-group-by=group``.
"""

from __future__ import annotations

import pytest

EPOCH_TIMES = pytest.StashKey[dict[str, dict[str, dict[str, float]]]]()


@pytest.fixture(scope="session")
def epoch_times(request: pytest.FixtureRequest) -> dict[str, dict[str, dict[str, float]]]:
    """``{group: {"harness" | "dataloader": {"min": s, "mean": s}}}`` measured in this session."""
    return request.config.stash.setdefault(EPOCH_TIMES, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    from test_command_speed import summarize

    terminalreporter.section("commands against import torch, same run (minimum of the rounds)")
    summarize(config, terminalreporter.write_line)
    groups = {g: t for g, t in config.stash.get(EPOCH_TIMES, {}).items() if {"harness", "dataloader"} <= set(t)}
    if not groups:
        return
    terminalreporter.section("DataLoader reference / harness, same run")
    for group, times in groups.items():
        harness, reference = times["harness"], times["dataloader"]
        for stat in ("min", "mean"):
            terminalreporter.write_line(
                f"{group} {stat:>4}: harness {harness[stat]:.3f} s, DataLoader {reference[stat]:.3f} s, "
                f"ratio {reference[stat] / harness[stat]:.2f}x"
            )
