"""The contract every method of this distribution keeps: one finite step, predict == network(), needs()."""

import math

import pytest
import torch

from oodbench.api import METADATA
from oodbench_methods.cnc import CNC
from oodbench_methods.dann import DANN
from oodbench_methods.group_dro import GroupDRO
from oodbench_methods.irm import IRM
from oodbench_methods.rsc import RSC
from oodbench_methods.rsc_plus import RSCPlus
from oodbench_methods.vae_irm import VAEIRM
from oodbench_methods.vrex import VREx
from toys import TinyConv, batch, task

METHODS = [GroupDRO, DANN, IRM, CNC, RSC, RSCPlus, VREx, VAEIRM]
REQUIRES = {"group_dro": {"group"}, "dann": {"source"}, "irm": {"env"}, "cnc": set(), "rsc": set(),
            "rsc_plus": set(), "vrex": {"env"}, "vae_irm": {"env"}}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_one_step_is_finite_and_predict_is_the_network(method):
    torch.manual_seed(0)
    sources = ("source",) if "source" in method.requires else ()
    algo = method(TinyConv, task(sources=sources), dict(method.defaults))
    batches = [batch(8, env=0, seed=1), batch(8, env=1, seed=2)] + [batch(8, env=2, seed=3) for _ in sources]
    before = [p.detach().clone() for p in algo.network().parameters()]
    stats = algo.update(batches)
    assert stats and all(math.isfinite(v) for v in stats.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.network().parameters()))
    x = torch.rand(5, 2, 4, 4)
    assert torch.equal(algo.predict(x), algo.network()(x))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_requires_is_declared_metadata(method):
    assert set(method.requires) == REQUIRES[method.name]
    assert method.needs(dict(method.defaults)) == REQUIRES[method.name]
    assert method.requires <= METADATA


def test_group_dro_online_mode_needs_the_same_groups():
    assert GroupDRO.needs(dict(GroupDRO.defaults, mode="online")) == {"group"}
