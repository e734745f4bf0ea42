"""The contract every method of this distribution keeps: one finite step, predict == network(), needs(), search spaces."""

import math
import random

import pytest
import torch

from oodbench.api import METADATA
from oodbench_methods.adjust import Adjust
from oodbench_methods.augment import Augment
from oodbench_methods.bi_loss import BiLoss
from oodbench_methods.bi_model import BiModel
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
ALL = [BiLoss, BiModel, Adjust, Augment, *METHODS]
DOCUMENTED = [  # values the shipped matrices and docs/*.md commands set by hand
    (BiLoss, "lr", 1e-4), (BiModel, "lr", 1e-3), (CNC, "lr", 1e-2), (Augment, "lr", 1e-2), (Augment, "lr", 1e-4),
    (GroupDRO, "eta", 0.001), (GroupDRO, "weight_decay", 0.001), (DANN, "lr", 1e-4), (RSC, "irm_weight", 1.0),
    (RSC, "irm_weight", 0.0), (VAEIRM, "vae_steps", 1470), (IRM, "lr", 0.0005), (IRM, "weight_decay", 0.0022),
    (IRM, "penalty_weight", 91257.0), (IRM, "anneal_steps", 190), (VREx, "penalty_weight", 100.0),
    (VREx, "penalty_weight", 1000.0), (VREx, "penalty_weight", 10000.0), (VREx, "anneal_steps", 80),
    (VREx, "anneal_steps", 190), (VREx, "anneal_steps", 700), (VREx, "lr", 1e-4),
]


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


@pytest.mark.parametrize("method", ALL, ids=lambda m: m.name)
def test_search_space_allows_the_defaults_and_draws_allowed_values_of_their_type(method):
    assert set(method.search_space) <= set(method.defaults)
    for key, dist in method.search_space.items():
        default = method.defaults[key]
        assert dist.contains(default), (key, default)
        for value in (dist.sample(random.Random(k)) for k in range(20)) if dist.searched else ():
            assert dist.contains(value) and type(value) is type(default), (key, value)


@pytest.mark.parametrize(("method", "key", "value"), DOCUMENTED, ids=lambda v: getattr(v, "name", str(v)))
def test_documented_values_are_allowed(method, key, value):
    assert method.search_space[key].contains(value)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_a_drawn_configuration_takes_a_finite_step(method):
    rng = random.Random(method.name)
    hparams = {**method.defaults, **{k: d.sample(rng) for k, d in method.search_space.items() if d.searched}}
    torch.manual_seed(0)
    sources = ("source",) if "source" in method.needs(hparams) else ()
    algo = method(TinyConv, task(sources=sources), hparams)
    batches = [batch(8, env=0, seed=1), batch(8, env=1, seed=2)] + [batch(8, env=2, seed=3) for _ in sources]
    assert all(math.isfinite(v) for v in algo.update(batches).values())
