"""Every test here needs memtorch; they skip, saying how to install it, where it is missing."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def memtorch_installed() -> None:
    """Checked when the first of these tests runs, not at collection: importing memtorch costs 6 s, which every
    pytest process (each xdist worker) would pay whether or not it runs a memristor test."""
    pytest.importorskip("memtorch", reason="memtorch is not installed: run plugins/oodbench-memristor/install-memtorch.sh")
