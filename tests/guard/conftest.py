"""The fake site holding the test-only ``oodbench-mutations`` distribution, one per test module; and the machine
check every mutation proof needs."""

import pytest
from guard_support import BASELINE, write_site

from oodbench.leaderboard import load
from oodbench.numerics import fingerprint


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_site(tmp_path_factory.mktemp("mutation-site"))


@pytest.fixture(autouse=True)
def same_numerics_as_the_baseline():
    """The proofs compare mutated seeds with the same recorded seeds, which holds only where the kernels round as
    on a machine of a kind the baseline recorded (oodbench.numerics); elsewhere the check falls back to new-seed
    intervals, too wide to see most mutations, so the proof cannot be made there and says so."""
    here, recorded = fingerprint(), load(BASELINE)["numerics"]
    if here not in recorded:
        pytest.skip(f"this machine's numerics fingerprint {here} is not among the baseline's {recorded}: record "
                    f"this kind of CPU beside them (leaderboard update ... --add, docs/reports.md) to prove the "
                    f"mutations here")
