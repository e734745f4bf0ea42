"""One ERM epoch of the default CNN on ColoredMNIST's 40 000 training images, two ways, in one run.

``harness``: the trainer's hot path. ``oodbench.train.prepare`` builds the
dataset and converts each environment to float once (that conversion happens
once per training run, so it is timed separately as ``extra_info["prepare_s"]``,
not in the epoch); the epoch is ``oodbench.train.train_epoch``, the trainer's own
loop body: a seeded permutation per environment, one index slice of 128 per
environment per step, ``algorithm.update`` takes one Adam step on both.
Per-epoch evaluation is left out of both sides.

``dataloader``: what a researcher commonly writes: a per-sample ``Dataset``
over the same uint8 images whose ``__getitem__`` converts one image to float,
a ``DataLoader`` with shuffle and default workers, batches of 256 (= 128 per
environment x 2), the same model, optimizer and number of steps.

A second group times the data path alone (the same permutations and
minibatches, no model), which is what the two loops actually differ in.

Run with ``pytest tests/benchmarks --benchmark-only --benchmark-group-by=group``;
the ratio of each pair is printed at the end. Nothing here asserts on time.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from oodbench.api import Environment
from oodbench.builtin.cnn import CNN
from oodbench.builtin.erm import ERM
from oodbench.matrix import TRAINING_DEFAULTS
from oodbench.plugins import get_plugins
from oodbench.train import Job, Prepared, _batch, build_algorithm, prepare, train_epoch

SEED = 0
BATCH_PER_ENV = 128
ROUNDS = 3
GROUP = "erm-epoch-colored_mnist-cnn"
DATA_GROUP = "epoch-data-only-colored_mnist"


def _job() -> Job:
    training = dict(TRAINING_DEFAULTS, epochs=1, holdout_fraction=0.1, batch_size=BATCH_PER_ENV)
    return Job(training_key="benchmark", dataset="colored_mnist", backbone="cnn", algorithm="erm", seed=SEED,
               training=training, algorithm_hparams=dict(ERM.defaults), backbone_hparams=dict(CNN.defaults),
               cells=[], checkpoint_dir="/nonexistent")


@pytest.fixture(scope="module")
def prepared() -> tuple[Job, Prepared, float]:
    job = _job()
    start = time.perf_counter()
    result = prepare(job, torch.device("cpu"))
    return job, result, time.perf_counter() - start


def _steps(envs: list[Environment]) -> int:
    return min(len(e) for e in envs) // BATCH_PER_ENV


class PerSampleImages(torch.utils.data.Dataset):
    """The usual per-sample dataset: one uint8 image converted to float per ``__getitem__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i].float() / 255.0, self.y[i]


def dataloader_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     loader: torch.utils.data.DataLoader, steps: int) -> float:
    """The reference loop; stops after ``steps`` batches so both sides see the same images count."""
    model.train()
    total = 0.0
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / steps


def harness_data_epoch(envs: list[Environment], generator: torch.Generator) -> int:
    """The trainer's minibatches of one epoch, built and dropped."""
    steps = _steps(envs)
    orders = [torch.randperm(len(e), generator=generator).to(e.x.device) for e in envs]
    seen = 0
    for step in range(steps):
        window = slice(step * BATCH_PER_ENV, (step + 1) * BATCH_PER_ENV)
        seen += sum(len(_batch(e, o[window], i).x) for i, (e, o) in enumerate(zip(envs, orders)))
    return seen


def dataloader_data_epoch(loader: torch.utils.data.DataLoader, steps: int) -> int:
    seen = 0
    for step, (x, _) in enumerate(loader):
        if step == steps:
            break
        seen += len(x)
    return seen


def _record(benchmark, epoch_times: dict, group: str, name: str, steps: int) -> None:
    stats = benchmark.stats.stats
    times = epoch_times.setdefault(group, {})
    times[name] = {"min": stats.min, "mean": stats.mean}
    benchmark.extra_info.update(steps=steps, images=steps * 2 * BATCH_PER_ENV)
    if name == "dataloader" and "harness" in times:
        benchmark.extra_info["ratio_to_harness"] = stats.min / times["harness"]["min"]


@pytest.fixture(scope="module")
def reference_loader() -> tuple[torch.utils.data.DataLoader, int]:
    """A shuffling DataLoader over the two training environments' uint8 images, per sample."""
    train = [e for e in get_plugins().registry("datasets").get("colored_mnist").build(SEED, None)
             if e.role == "train"]
    assert [len(e) for e in train] == [20_000, 20_000] and train[0].x.dtype == torch.uint8
    # as many images per environment as the harness trains on (its main parts; 10 % is held out)
    x, y = torch.cat([e.x[:18_000] for e in train]), torch.cat([e.y[:18_000] for e in train])
    loader = torch.utils.data.DataLoader(PerSampleImages(x, y), batch_size=2 * BATCH_PER_ENV, shuffle=True,
                                         generator=torch.Generator().manual_seed(SEED))
    return loader, _steps(train)


@pytest.mark.benchmark(group=GROUP)
def test_harness_epoch(benchmark, prepared, epoch_times):
    job, ready, prepare_s = prepared
    envs = [s.data for s in ready.train]
    assert [len(e) for e in envs] == [18_000, 18_000] and envs[0].x.dtype == torch.float32

    def setup():
        torch.manual_seed(SEED)
        algorithm = build_algorithm(job, ready.task)
        algorithm.setup(envs)
        return (algorithm, envs, BATCH_PER_ENV, torch.Generator().manual_seed(SEED)), {}

    stats = benchmark.pedantic(train_epoch, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert "loss" in stats
    benchmark.extra_info["prepare_s"] = prepare_s
    _record(benchmark, epoch_times, GROUP, "harness", _steps(envs))


@pytest.mark.benchmark(group=GROUP)
def test_dataloader_epoch(benchmark, prepared, reference_loader, epoch_times):
    _, ready, _ = prepared
    loader, steps = reference_loader

    def setup():
        torch.manual_seed(SEED)
        model = CNN(ready.task.input_shape, ready.task.num_classes, **CNN.defaults)
        optimizer = torch.optim.Adam(model.parameters(), lr=ERM.defaults["lr"],
                                     weight_decay=ERM.defaults["weight_decay"])
        return (model, optimizer, loader, steps), {}

    loss = benchmark.pedantic(dataloader_epoch, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert math.isfinite(loss)
    _record(benchmark, epoch_times, GROUP, "dataloader", steps)


@pytest.mark.benchmark(group=DATA_GROUP)
def test_harness_data_epoch(benchmark, prepared, epoch_times):
    _, ready, _ = prepared
    envs = [s.data for s in ready.train]
    seen = benchmark.pedantic(harness_data_epoch, setup=lambda: ((envs, torch.Generator().manual_seed(SEED)), {}),
                              rounds=5, iterations=1, warmup_rounds=1)
    assert seen == _steps(envs) * 2 * BATCH_PER_ENV
    _record(benchmark, epoch_times, DATA_GROUP, "harness", _steps(envs))


@pytest.mark.benchmark(group=DATA_GROUP)
def test_dataloader_data_epoch(benchmark, reference_loader, epoch_times):
    loader, steps = reference_loader
    seen = benchmark.pedantic(dataloader_data_epoch, args=(loader, steps), rounds=5, iterations=1, warmup_rounds=1)
    assert seen == steps * 2 * BATCH_PER_ENV
    _record(benchmark, epoch_times, DATA_GROUP, "dataloader", steps)
