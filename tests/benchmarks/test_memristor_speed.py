"""Evaluating a converted CNN on ColoredMNIST's 20 000-image test environment, per memristor target.

``test_evaluate_on_<target>``: the harness's own ``oodbench.train.evaluate``
(batches of ``EVAL_BATCH`` under ``inference_mode``) on the network that
target deploys at its default settings, i.e. through the batched crossbar
path of ``oodbench_memristor.crossbar``. The conversion (``patch_model``,
``tune_()``, non-idealities) happens once per training run and target, so it
is timed separately as ``extra_info["convert_s"]``. Budget from issue 7: at
most 3 minutes per environment on 2 cores.

``test_memtorch_per_sample``: the same ideal network through memtorch's own
forward (a Python loop over samples, C++ tiled inference per sample) on
``REFERENCE_IMAGES`` images; ``extra_info["projected_20000_s"]`` scales it to
the environment.

The network is the default CNN at its seeded initialisation: the crossbar
work does not depend on what the weights learnt. Run with
``pytest tests/benchmarks/test_memristor_speed.py --benchmark-only``.
Nothing here asserts on time.
"""

from __future__ import annotations

import time
from types import MethodType

import pytest
import torch

from oodbench.builtin.cnn import CNN
from oodbench.builtin.erm import ERM
from oodbench.matrix import TRAINING_DEFAULTS
from oodbench.plugins import get_plugins
from oodbench.train import Job, evaluate, prepare

SEED = 0
GROUP = "memristor-eval-colored_mnist-test-20000"
TARGETS = ["memristor", "memristor_faults", "memristor_aging", "memristor_states"]
REFERENCE_IMAGES = 64


@pytest.fixture(scope="module", autouse=True)
def memtorch_installed() -> None:
    """Skipped without memtorch; imported here, not at collection, where it would cost every pytest run 6 s."""
    pytest.importorskip("memtorch", reason="memtorch is not installed: run plugins/oodbench-memristor/install-memtorch.sh")


@pytest.fixture(scope="module")
def test_split():
    training = dict(TRAINING_DEFAULTS, epochs=1, holdout_fraction=0.0)
    job = Job(training_key="benchmark", dataset="colored_mnist", backbone="cnn", algorithm="erm", seed=SEED,
              training=training, algorithm_hparams=dict(ERM.defaults), backbone_hparams=dict(CNN.defaults),
              cells=[], checkpoint_dir="/nonexistent")
    ready = prepare(job, torch.device("cpu"))
    split = next(s for s in ready.splits if s.role == "test")
    assert len(split.eval_data) == 20_000
    return split, ready.task.num_groups


@pytest.fixture(scope="module")
def network() -> CNN:
    torch.manual_seed(SEED)
    return CNN((2, 28, 28), 2, **CNN.defaults).eval()


def deploy(name: str, network: CNN) -> tuple[torch.nn.Module, float]:
    target = get_plugins().registry("targets").get(name)()
    start = time.perf_counter()
    deployed = target.deploy(network, None, SEED)
    return deployed, time.perf_counter() - start


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("name", TARGETS)
def test_evaluate_on(benchmark, test_split, network, name):
    split, num_groups = test_split
    deployed, convert_s = deploy(name, network)
    metrics = benchmark.pedantic(evaluate, args=(deployed, [split], num_groups), rounds=1, iterations=1)
    assert metrics[split.name].n == 20_000
    benchmark.extra_info.update(convert_s=convert_s, images=20_000, acc=metrics[split.name].acc,
                                threads=torch.get_num_threads())


@pytest.mark.benchmark(group=GROUP)
def test_memtorch_per_sample(benchmark, test_split, network):
    from oodbench_memristor.conversion import memtorch_layers

    split, _ = test_split
    deployed, _ = deploy("memristor", network)
    for _, layer in memtorch_layers(deployed):
        layer.forward = MethodType(type(layer).forward, layer)
    x = split.eval_data.x[:REFERENCE_IMAGES]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return deployed(x)

    assert benchmark.pedantic(run, rounds=1, iterations=1).shape == (REFERENCE_IMAGES, 2)
    benchmark.extra_info.update(images=REFERENCE_IMAGES,
                                projected_20000_s=benchmark.stats.stats.mean * 20_000 / REFERENCE_IMAGES)
