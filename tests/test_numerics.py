"""The numerics fingerprint: the same on every call and process of one machine, another when the kernels round
differently (MKL made to take its SSE2 "compatible" code path stands in for another CPU)."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from oodbench.numerics import fingerprint

PRINT = [sys.executable, "-c", "from oodbench.numerics import fingerprint; print(fingerprint())"]


def _in_process(**env: str) -> str:
    return subprocess.run(PRINT, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()


def test_the_fingerprint_is_stable_and_ignores_the_thread_count():
    torch_threads = torch.get_num_threads()
    first = fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    assert fingerprint() == first and torch.get_num_threads() == torch_threads  # its one thread is undone
    assert _in_process(OMP_NUM_THREADS="2") == _in_process(OMP_NUM_THREADS="1") == first


@pytest.mark.skipif(platform.machine() != "x86_64" or not torch.backends.mkl.is_available(),
                    reason="needs MKL on x86-64 to pick another code path")
def test_kernels_that_round_differently_give_another_fingerprint():
    assert _in_process(MKL_CBWR="COMPATIBLE") != fingerprint()  # SSE2 kernels: other sums on every x86-64 kind
