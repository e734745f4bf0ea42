"""Plugins that kill their own process on purpose, where ``OODBENCH_FAULT`` says: the fault suite's instruments.

``OODBENCH_FAULT`` is ``build:SEED`` (after the dataset of SEED is built),
``update:SEED:STEP`` (mid-epoch, at that optimiser step of SEED's training)
or ``deploy`` (inside the ``faulty_float`` target's deployment). With
``OODBENCH_FAULT_ONCE=FILE`` the fault fires only while FILE exists (it is
removed first), so a resume runs clean; without it, it fires every time.
Everything else behaves as the small ColoredMNIST, ERM and the float target.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
import torch.nn.functional as F

from oodbench import hookimpl
from oodbench.api import SingleModel, pooled
from oodbench.data.catalog import SpecDataset
from oodbench.data.spec import load_spec

SPEC_ENV = "OODBENCH_FAULT_SPEC"


def _fire(where: str) -> None:
    if os.environ.get("OODBENCH_FAULT") != where:
        return
    once = os.environ.get("OODBENCH_FAULT_ONCE")
    if once:
        if not Path(once).exists():
            return
        Path(once).unlink()
    os.kill(os.getpid(), signal.SIGKILL)


class FaultyData(SpecDataset):
    """The spec at ``OODBENCH_FAULT_SPEC``; ``build:SEED`` kills the process once that seed's data exists."""

    def build(self, seed, data_dir):
        environments = super().build(seed, data_dir)
        _fire(f"build:{seed}")
        return environments


class FaultyERM(SingleModel):
    """ERM; ``update:SEED:STEP`` kills the process at that step of that seed's training."""

    name = "faulty_erm"

    def setup(self, train):
        self.steps = 0

    def objective(self, batches):
        self.steps += 1
        _fire(f"update:{torch.initial_seed()}:{self.steps}")
        batch = pooled(batches)
        return F.cross_entropy(self.model(batch.x), batch.y), {}


class FaultyFloat:
    """The float target; ``deploy`` kills the process while it deploys."""

    name = "faulty_float"
    defaults: dict = {}

    def __init__(self, **hparams):
        self.hparams = hparams

    def supports(self, backbone_name):
        return True

    def deploy(self, network, calibration, seed):
        _fire("deploy")
        return network


@hookimpl
def oodbench_register_datasets(register):
    if os.environ.get(SPEC_ENV):
        spec = load_spec(Path(os.environ[SPEC_ENV]))
        register(FaultyData(spec))


@hookimpl
def oodbench_register_algorithms(register):
    register(FaultyERM)


@hookimpl
def oodbench_register_targets(register):
    register(FaultyFloat)
