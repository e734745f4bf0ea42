"""Every algorithm, feature-level ones included, trains the SNN unchanged: one finite update each.

Needs the first-party ``oodbench-methods`` distribution installed beside this one (the Makefile installs both).
"""

import math

import pytest
import torch
from oodbench_methods.dann import DANN
from oodbench_methods.rsc import RSC
from oodbench_snn.snn import SNN
from snn_toys import SHAPE, batch, environment, images, task

from oodbench.plugins import get_plugins

ALGORITHMS = ["erm", "bi_loss", "bi_model", "adjust", "group_dro", "dann", "irm", "cnc", "rsc", "rsc_plus", "vrex",
              "vae_irm"]
"""The seed table's eight (ERM included) and the other methods that take 2-channel ColoredMNIST-like images
(``augment``'s default transforms need RGB, whatever the backbone)."""


def factory() -> SNN:
    return SNN(SHAPE, 2, **SNN.defaults)


def _step(algorithm, sources: bool) -> dict[str, float]:
    algorithm.setup([environment(16, 0), environment(16, 1)])
    batches = [batch(8, 0, 1), batch(8, 1, 2)] + ([batch(8, 2, 3)] if sources else [])
    before = [p.detach().clone() for p in algorithm.network().parameters()]
    stats = algorithm.update(batches)
    assert stats and all(math.isfinite(v) for v in stats.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, algorithm.network().parameters()))
    x = images(3, 4)
    assert torch.equal(algorithm.predict(x), algorithm.network()(x))
    return stats


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_takes_a_step(name):
    method = get_plugins().registry("algorithms").get(name)
    torch.manual_seed(0)
    sources = "source" in method.needs(dict(method.defaults))
    algorithm = method(factory, task(("source",) if sources else ()), dict(method.defaults))
    _step(algorithm, sources)


def test_dann_trains_the_spiking_featurizer_through_the_reversed_domain_gradient():
    torch.manual_seed(0)
    algorithm = DANN(factory, task(("source",)), dict(DANN.defaults))
    algorithm.steps.fill_(DANN.defaults["anneal_steps"])  # alpha near 1: the reversal is in full force
    assert algorithm.domain_head[0].in_features == algorithm.model.n_features
    first_conv = algorithm.model.featurizer[1].layers[0].weight
    before = first_conv.detach().clone()
    stats = _step(algorithm, sources=True)
    assert stats["alpha"] > 0.99 and stats["domain"] > 0
    assert not torch.equal(first_conv, before)


def test_rsc_mutes_the_spike_feature_map_and_trains_on_the_rest():
    torch.manual_seed(0)
    algorithm = RSC(factory, task(), dict(RSC.defaults))
    x = batch(8, 0, 1).x
    feature_map = algorithm.feature_map(x)
    steps, width = SNN.defaults["steps"], SNN.defaults["width"]
    assert feature_map.shape == (8, steps * 2 * width, 2, 2)
    assert set(feature_map.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(algorithm.head(feature_map), algorithm.predict(x))
    assert _step(algorithm, sources=False)["muted"] > 0
