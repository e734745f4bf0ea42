"""Broken variants of every guarded method, for the leaderboard guard's mutation proof (issue 18).

Loaded as the entry point of a test-only distribution; on import it applies the mutation that
``OODBENCH_MUTATION`` names, in every process that loads plugins (pool workers included), and
registers nothing. Each mutation removes the one ingredient that makes its method what it is, at
run time, without touching the plugin's source: a guard that passes a mutated run cannot see that
method break.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch

MUTATION_ENV = "OODBENCH_MUTATION"


def _zero_penalty(module: str, name: str) -> Callable[[], None]:
    """A mutation that keeps the risk and multiplies the penalty of ``module.name.risk_and_penalty`` by 0."""

    def mutate() -> None:
        cls = getattr(importlib.import_module(module), name)
        original = cls.risk_and_penalty

        def risk_and_penalty(self, batches):
            risk, penalty = original(self, batches)
            return risk, penalty * 0.0

        cls.risk_and_penalty = risk_and_penalty

    return mutate


def group_dro() -> None:
    from oodbench_methods import group_dro as module

    module.exponentiated_step = lambda q, losses, present, eta: q  # the group weights stay uniform


def bi_loss() -> None:
    from oodbench_methods import bi_loss as module

    module.versions_by_attribute = lambda x, attribute, swapped: [x, x]  # no counterfactual colour


def adjust() -> None:
    from oodbench_methods import adjust as module

    def unbalanced(groups, total, generator):
        pool = torch.cat(groups)
        return pool[torch.randint(len(pool), (total,), generator=generator)]

    module.balanced_indices = unbalanced  # draws from the pool as it is: the colour stays tied to the label


def bi_model() -> None:
    from oodbench_methods.bi_model import PriorMixture

    def forward(self, x):
        return self.members[0](x)  # one member answers for every colour

    PriorMixture.forward = forward


def dann() -> None:
    from oodbench_methods import dann as module

    module.reverse_gradient = lambda x, alpha: x  # the featurizer helps the domain head instead of fooling it


def cnc() -> None:
    from oodbench_methods import cnc as module

    original = module.contrastive_loss
    module.contrastive_loss = lambda *args, **kwargs: original(*args, **kwargs) * 0.0


def rsc() -> None:
    from oodbench_methods.rsc import RSC

    RSC.challenge_mask = lambda self, grad: torch.ones_like(grad)  # nothing muted (improved RSC has its own mask)


def rsc_plus() -> None:
    from oodbench_methods.rsc_plus import RSCPlus

    RSCPlus.challenge_mask = lambda self, grad: torch.ones_like(grad)  # edges and instance norm stay, nothing muted


def augment() -> None:
    from oodbench_methods.augment import Augment

    Augment.augment = lambda self, x: x  # every image keeps its own colour


def vae_irm() -> None:
    from oodbench_methods import vae_irm as module

    module.irm_penalty = lambda logits, y, estimate: logits.new_zeros(())  # fine-tuning on the risk alone


def snn() -> None:
    from oodbench_snn.lif import LIF

    LIF.forward = lambda self, current: current  # currents pass through: no spikes


def memristor() -> None:
    from oodbench_memristor.ideal import MemristorTarget

    MemristorTarget.deploy = lambda self, network, calibration, seed: network  # the float network, no crossbars


def memristor_nonidealities() -> None:
    from oodbench_memristor.aging import AgingTarget
    from oodbench_memristor.faults import FaultsTarget
    from oodbench_memristor.states import StatesTarget

    for cls in (FaultsTarget, AgingTarget, StatesTarget):
        cls.nonidealities = lambda self: None  # ideal crossbars under a non-ideal target's name


MUTATIONS: dict[str, tuple[str, Callable[[], None]]] = {
    "irm": ("IRM penalty -> 0", _zero_penalty("oodbench_methods.irm", "IRM")),
    "vrex": ("V-REx penalty -> 0", _zero_penalty("oodbench_methods.vrex", "VREx")),
    "group_dro": ("GroupDRO weights frozen uniform", group_dro),
    "bi_loss": ("bi-loss without the counterfactual colour", bi_loss),
    "adjust": ("adjust draws without balancing the groups", adjust),
    "bi_model": ("bi-model with one member", bi_model),
    "dann": ("DANN's gradient reversal -> identity", dann),
    "cnc": ("CNC's contrastive weight -> 0", cnc),
    "rsc": ("RSC's mask -> none", rsc),
    "rsc_plus": ("improved RSC's mask -> none", rsc_plus),
    "augment": ("augment -> the images as they are", augment),
    "vae_irm": ("VAE-IRM's fine-tuning penalty -> 0", vae_irm),
    "snn": ("the SNN's spikes -> identity", snn),
    "memristor": ("the memristor target deploys the float network", memristor),
    "memristor_nonidealities": ("memristor faults, aging and states -> ideal crossbars", memristor_nonidealities),
}

if os.environ.get(MUTATION_ENV):
    MUTATIONS[os.environ[MUTATION_ENV]][1]()
