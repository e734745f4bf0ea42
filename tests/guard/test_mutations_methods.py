"""Mutation proof of the leaderboard guard, algorithms (issue 18): a run of the ``guard`` matrix with a method's
defining ingredient removed at run time fails ``oodbench leaderboard check`` naming that method's row, and only
that row (tests/guard/mutations.py lists what each mutation removes; docs/reports.md has the table)."""

import pytest
from guard_support import METHOD_CASES, assert_detected, run_guard


@pytest.mark.slow
@pytest.mark.parametrize("case", [c.param() for c in METHOD_CASES])
def test_a_broken_method_fails_the_guard(case, site, tmp_path):
    assert_detected(case, run_guard(site, tmp_path / "run", list(case.select), case.mutation, threads=1))
