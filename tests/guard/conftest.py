"""The fake site holding the test-only ``oodbench-mutations`` distribution, one per test module."""

import pytest
from guard_support import write_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_site(tmp_path_factory.mktemp("mutation-site"))
