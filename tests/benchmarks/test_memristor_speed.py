"""One device draw of a converted CNN evaluated on ColoredMNIST's 20 000-image test environment, per memristor
target, against the float network on the same images in the same run.

``test_float``: the trained-network stand-in (the default CNN at its seeded
initialisation: the crossbar work does not depend on what the weights
learnt) through the harness's own ``oodbench.train.evaluate``.
``test_draw_on[<target>]``: what each further draw of a stochastic target
costs in a matrix run: ``deploy`` with a new seed (the chip programmed on
the first deployment is kept, programmed.py; its conversion time is
``extra_info["program_s"]``), then ``evaluate`` on the 20 000 images through
the batched crossbar path. The summary after the tables prints each
target's time over the float network's (issue 20 asks for at most 10 s per
draw on 2 cores at the default settings).

``test_memtorch_per_sample``: the same ideal network through memtorch's own
forward (a Python loop over samples, C++ tiled inference per sample) on
``REFERENCE_IMAGES`` images; ``extra_info["projected_20000_s"]`` scales it.

Run with ``pytest tests/benchmarks/test_memristor_speed.py --benchmark-only --benchmark-group-by=group``.
Nothing here asserts on time.
"""

from __future__ import annotations

import dataclasses
import itertools
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
GROUP = "memristor-draw-colored_mnist-test-20000"
TARGETS = ["memristor", "memristor_faults", "memristor_aging", "memristor_states"]
REFERENCE_IMAGES = 64
ROUNDS = 3
TIMES = pytest.StashKey[dict]()
SUMMARY = "oodbench-memristor-speed-summary"


@pytest.fixture(scope="module", autouse=True)
def memtorch_installed() -> None:
    """Skipped without memtorch; imported here, not at collection, where it would cost every pytest run 6 s."""
    pytest.importorskip("memtorch", reason="memtorch is not installed: run plugins/oodbench-memristor/install-memtorch.sh")


@pytest.fixture(scope="module")
def test_split():
    """The whole 20 000-image test environment: its held-out and main parts joined into one split."""
    training = dict(TRAINING_DEFAULTS, epochs=1)
    job = Job(training_key="benchmark", dataset="colored_mnist", backbone="cnn", algorithm="erm", seed=SEED,
              training=training, algorithm_hparams=dict(ERM.defaults), backbone_hparams=dict(CNN.defaults),
              cells=[], checkpoint_dir="/nonexistent")
    ready = prepare(job, torch.device("cpu"))
    parts = [s for s in ready.splits if s.role == "test"]
    joined = dataclasses.replace(parts[0].data, **{f: torch.cat([getattr(p.data, f) for p in parts])
                                                   for f in ("x", "y", "attribute", "group")})
    split = dataclasses.replace(parts[0], name="test/all", part="all", data=joined, eval_data=joined,
                                index=torch.arange(len(joined)))
    assert len(split.eval_data) == 20_000
    return split, ready.task.num_groups


@pytest.fixture(scope="module")
def network() -> CNN:
    torch.manual_seed(SEED)
    return CNN((2, 28, 28), 2, **CNN.defaults).eval()


class RatioSummary:
    """Prints each target's draw time over the float network's after the benchmark tables."""

    def __init__(self, times: dict[str, dict]) -> None:
        self.times = times

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if "float" not in self.times:
            return
        terminalreporter.section("one memristor draw (deploy + 20 000 images) / float evaluation, same run")
        reference = self.times["float"]
        for name, measured in self.times.items():
            if name != "float":
                terminalreporter.write_line(
                    f"{name}: min {measured['min']:.1f} s = {measured['min'] / reference['min']:.1f}x float "
                    f"({reference['min']:.2f} s), program once {measured['program_s']:.1f} s, "
                    f"{measured['threads']} threads")


@pytest.fixture(scope="module")
def times(request: pytest.FixtureRequest) -> dict[str, dict]:
    times = request.config.stash.setdefault(TIMES, {})
    if not request.config.pluginmanager.has_plugin(SUMMARY):
        request.config.pluginmanager.register(RatioSummary(times), SUMMARY)
    return times


@pytest.mark.benchmark(group=GROUP)
def test_float(benchmark, test_split, network, times):
    split, num_groups = test_split
    benchmark.pedantic(evaluate, args=(network, [split], num_groups), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    times["float"] = {"min": benchmark.stats.stats.min}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("name", TARGETS)
def test_draw_on(benchmark, test_split, network, times, name):
    split, num_groups = test_split
    target = get_plugins().registry("targets").get(name)()
    start = time.perf_counter()
    target.deploy(network, None, SEED)  # programs the chip this module's draws reuse
    program_s = time.perf_counter() - start
    seeds = itertools.count(1)

    def draw() -> dict:
        return evaluate(target.deploy(network, None, next(seeds)), [split], num_groups)

    metrics = benchmark.pedantic(draw, rounds=ROUNDS, iterations=1)
    assert metrics[split.name].n == 20_000
    times[name] = {"min": benchmark.stats.stats.min, "program_s": program_s, "threads": torch.get_num_threads()}
    benchmark.extra_info.update(program_s=program_s, images=20_000, acc=metrics[split.name].acc,
                                threads=torch.get_num_threads())


@pytest.mark.benchmark(group=GROUP)
def test_memtorch_per_sample(benchmark, test_split, network):
    from oodbench_memristor.conversion import memtorch_layers

    split, _ = test_split
    deployed = get_plugins().registry("targets").get("memristor")().deploy(network, None, SEED)
    for _, layer in memtorch_layers(deployed):
        layer.forward = MethodType(type(layer).forward, layer)
    x = split.eval_data.x[:REFERENCE_IMAGES]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return deployed(x)

    assert benchmark.pedantic(run, rounds=1, iterations=1).shape == (REFERENCE_IMAGES, 2)
    benchmark.extra_info.update(images=REFERENCE_IMAGES,
                                projected_20000_s=benchmark.stats.stats.mean * 20_000 / REFERENCE_IMAGES)
