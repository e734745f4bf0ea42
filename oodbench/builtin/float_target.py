"""The ``float`` target: the trained network as it runs in float32 on the training device."""

from __future__ import annotations

import torch
from torch import nn

from oodbench import hookimpl


class FloatTarget:
    """Identity deployment; every backbone runs on it."""

    name = "float"
    defaults: dict = {}

    def __init__(self, **hparams: object) -> None:
        self.hparams = hparams

    def supports(self, backbone_name: str) -> bool:
        return True

    def deploy(self, network: nn.Module, calibration: torch.Tensor, seed: int) -> nn.Module:
        return network


@hookimpl
def oodbench_register_targets(register):
    register(FloatTarget)
