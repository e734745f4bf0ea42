"""Mutation proof of the leaderboard guard, backbones and targets (issue 18): RSC's masks, the SNN's spikes and
the crossbars' mapping and non-idealities removed at run time each fail ``oodbench leaderboard check`` on the
rows they reach; the whole ``guard`` matrix unmutated, in one process given two torch threads (the matrix's
``threads = 1`` must hold there as in the baseline's pool workers and Ray tasks), passes it."""

import pytest
from guard_support import HARDWARE_CASES, assert_detected, run_guard


@pytest.mark.slow
@pytest.mark.parametrize("case", [c.param() for c in HARDWARE_CASES])
def test_broken_hardware_fails_the_guard(case, site, tmp_path):
    assert_detected(case, run_guard(site, tmp_path / "run", list(case.select), case.mutation, threads=1))


@pytest.mark.slow
def test_the_unmutated_guard_on_two_threads_passes(site, tmp_path):
    result = run_guard(site, tmp_path / "run", [], None, threads=2, executor=["--executor", "local"])
    print(result.check_text)
    assert result.returncode == 0, result.run_text
    assert result.check_code == 0 and not result.failing(), result.check_text
