"""One training run and every target that deploys it.

A job trains one (dataset, backbone, algorithm, seed, hyperparameters) once,
evaluates every split each epoch, keeps the checkpoints that a selection
rule can pick, then deploys each picked network to each target of the job.
Results go out through ``emit`` as soon as they exist, so the store keeps
them even if a later target (or the process) dies. Nothing here touches the
store: a job runs the same in-process, in a worker process or on Ray.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import sys
import sysconfig
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from oodbench.api import Algorithm, Batch, Environment, Task, backbone_problem
from oodbench.draws import DRAWS, draw_count, draw_seed
from oodbench.hardware_aware import SEED_OFFSET, perturbed, perturbing_target
from oodbench.matrix import Cell
from oodbench.metrics import EnvMetrics, env_metrics, mean_over_draws
from oodbench.plugins import get_plugins
from oodbench.selection import BestEpochs
from oodbench.splits import Split, split_environments

EVAL_BATCH = 512
CALIBRATION_SIZE = 256


@dataclass
class TargetCell:
    """A target of a job and the key of the matrix cell it completes."""

    key: str
    target: str
    hparams: dict[str, Any]


@dataclass
class Job:
    """Everything a worker needs; plain data, so it pickles to processes and Ray."""

    training_key: str
    dataset: str
    backbone: str
    algorithm: str
    seed: int
    training: dict[str, Any]
    algorithm_hparams: dict[str, Any]
    backbone_hparams: dict[str, Any]
    cells: list[TargetCell]
    checkpoint_dir: str
    device: str = "cpu"
    data_dir: str | None = None
    reuse_epochs: dict[str, int] | None = None
    threads: int | None = None
    """The matrix's ``threads``: this job's torch threads, whatever its worker was given."""

    @classmethod
    def from_cells(cls, cells: Sequence[Cell], run_dir: Path, device: str = "cpu", data_dir: str | None = None,
                   reuse_epochs: dict[str, int] | None = None, threads: int | None = None) -> Job:
        first = cells[0]
        return cls(training_key=first.training_key, dataset=first.dataset, backbone=first.backbone,
                   algorithm=first.algorithm, seed=first.seed, training=first.training,
                   algorithm_hparams=first.algorithm_hparams, backbone_hparams=first.backbone_hparams,
                   cells=[TargetCell(c.key, c.target, c.target_hparams) for c in cells],
                   checkpoint_dir=str(run_dir / "checkpoints" / first.training_key), device=device,
                   data_dir=data_dir, reuse_epochs=reuse_epochs, threads=threads)


@dataclass
class TrainingResult:
    """Curves of one training run and the epochs each selection rule picked."""

    key: str
    status: str
    error: str | None = None
    splits: list[dict[str, str]] = field(default_factory=list)
    curves: list[dict[str, EnvMetrics]] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    selected: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)
    """sha256 of each kept checkpoint's file, by epoch: a resume reuses only files that still match."""
    duration_s: float = 0.0


@dataclass
class CellResult:
    """Metrics of one target's deployment of each selected network, per split."""

    key: str
    status: str
    error: str | None = None
    selected: dict[str, int] = field(default_factory=dict)
    results: dict[str, dict[str, EnvMetrics]] = field(default_factory=dict)
    """Per rule and split; a stochastic target's are the mean over its draws."""
    draws: dict[str, list[dict[str, EnvMetrics]]] = field(default_factory=dict)
    """A stochastic target's every draw: per rule, one {split: metrics} per draw (empty for other targets)."""
    splits: list[dict[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    traceback: str | None = None
    """A failure's full traceback, kept in the store for ``oodbench report RUN --failed``."""


Emit = Callable[[TrainingResult | CellResult], None]
EpochCallback = Callable[[int, int], None]


def _as_float(env: Environment, device: torch.device) -> Environment:
    """Whole-environment tensors on the device, images in [0, 1]: converted once, sliced per step."""
    x = env.x.to(device)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return Environment(env.name, env.role, x, env.y.to(device).long(), env.attribute.to(device).long(),
                       env.group.to(device).long(), env.ceiling)


@dataclass
class Prepared:
    task: Task
    splits: list[Split]
    train: list[Split]


def prepare(job: Job, device: torch.device) -> Prepared:
    """Build the dataset for this seed, move it to the device and cut the held-out splits.

    Source environments are dropped unless the algorithm needs them: they are
    never evaluated, and converting them costs memory on every run.
    """
    plugins = get_plugins()
    dataset = plugins.registry("datasets").get(job.dataset)
    wants_source = "source" in plugins.registry("algorithms").get(job.algorithm).needs(job.algorithm_hparams)
    envs = [_as_float(e, device) for e in dataset.build(job.seed, Path(job.data_dir) if job.data_dir else None)
            if e.role != "source" or wants_source]
    splits = split_environments(envs, job.training["holdout_fraction"], job.seed, job.training["train_eval_size"])
    train = [s for s in splits if s.role == "train" and s.part == "main"]
    if not train:
        raise ValueError(f"dataset {job.dataset} has no environment with role 'train'")
    task = Task(dataset=job.dataset, input_shape=tuple(envs[0].x.shape[1:]), num_classes=dataset.num_classes,
                env_names=tuple(s.env for s in train), attribute=dataset.attribute,
                source_names=tuple(s.env for s in splits if s.role == "source"),
                attribute_values=tuple(dataset.attribute_values), device=device,
                swap_channels=getattr(dataset, "swap_channels", None))
    return Prepared(task, splits, train)


def build_algorithm(job: Job, task: Task) -> Algorithm:
    plugins = get_plugins()
    backbone_cls = plugins.registry("backbones").get(job.backbone)
    algorithm_cls = plugins.registry("algorithms").get(job.algorithm)

    def backbone_factory() -> nn.Module:
        network = backbone_cls(task.input_shape, task.num_classes, **job.backbone_hparams)
        problem = backbone_problem(network)
        if problem:
            dist, version = plugins.dist_of("backbones", job.backbone)
            raise TypeError(f"backbone {job.backbone!r} from {dist} {version} {problem}")
        return network

    return algorithm_cls(backbone_factory, task, job.algorithm_hparams).to(task.device)


@torch.inference_mode()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], splits: Sequence[Split],
             num_groups: int) -> dict[str, EnvMetrics]:
    """Metrics of every non-source split, in large batches without autograd."""
    metrics = {}
    for split in splits:
        if split.role == "source":
            continue
        data = split.eval_data
        predictions = torch.cat([forward(data.x[i:i + EVAL_BATCH]).argmax(1) for i in range(0, len(data), EVAL_BATCH)])
        metrics[split.name] = env_metrics(predictions, data.y, data.group, num_groups, data.ceiling)
    return metrics


def _batch(env: Environment, index: torch.Tensor, env_id: int) -> Batch:
    return Batch(x=env.x[index], y=env.y[index], env=torch.full_like(index, env_id, device=env.x.device),
                 group=env.group[index], attribute=env.attribute[index])


def train_epoch(algorithm: Algorithm, envs: Sequence[Environment], batch_size: int, generator: torch.Generator,
                epoch: int = 1, source: Sequence[Environment] = ()) -> dict[str, float]:
    """One pass: a seeded permutation per environment, ``update`` on one index slice of each per step.

    The smallest training environment sets the number of steps; ``source``
    environments (for algorithms that need them) follow the training ones in
    each step's list and wrap around when shorter. Returns the mean of each
    statistic ``update`` reported; a non-finite one stops the run (the cell
    is recorded as failed, the matrix goes on).
    """
    algorithm.train()
    steps = min(len(e) for e in envs) // batch_size
    every = [*envs, *source]
    orders = [torch.randperm(len(e), generator=generator).to(e.x.device) for e in every]
    sums: dict[str, float] = defaultdict(float)
    for step in range(steps):
        window = torch.arange(step * batch_size, (step + 1) * batch_size)
        stats = algorithm.update([_batch(e, o[window % len(o)], i) for i, (e, o) in enumerate(zip(every, orders))])
        for name, value in stats.items():
            if not math.isfinite(value):
                raise FloatingPointError(f"{name} became {value} at epoch {epoch}, step {step + 1}")
            sums[name] += value
    return {name: total / steps for name, total in sums.items()}


def train(job: Job, algorithm: Algorithm, prepared: Prepared,
          on_epoch: EpochCallback | None = None) -> tuple[TrainingResult, dict[int, dict[str, torch.Tensor]]]:
    """The loop: ``setup``, then epochs of ``update`` over index slices, evaluating every split each epoch."""
    start = time.perf_counter()
    batch_size, epochs = job.training["batch_size"], job.training["epochs"]
    train_envs = [s.data for s in prepared.train]
    source_envs = [s.data for s in prepared.splits if s.role == "source"]
    if min(len(e) for e in train_envs) < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the smallest training environment "
                         f"({min(len(e) for e in train_envs)} samples)")
    algorithm.setup(train_envs)
    generator = torch.Generator().manual_seed(job.seed)
    hardware = perturbing_target(job.training)
    noise = torch.Generator().manual_seed(job.seed + SEED_OFFSET)
    best = BestEpochs(prepared.splits)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    result = TrainingResult(key=job.training_key, status="done", splits=_describe(prepared.splits))
    for epoch in range(1, epochs + 1):
        with perturbed(algorithm.network(), hardware, noise) if hardware else contextlib.nullcontext():
            result.stats.append(train_epoch(algorithm, train_envs, batch_size, generator, epoch, source_envs))
        algorithm.eval()
        metrics = evaluate(algorithm.predict, prepared.splits, prepared.task.num_groups)
        result.curves.append(metrics)
        if best.update(epoch, metrics):
            kept[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in algorithm.state_dict().items()}
        selected = set(best.epochs().values())
        kept = {e: s for e, s in kept.items() if e in selected}
        if on_epoch:
            on_epoch(epoch, epochs)
    result.selected = best.epochs()
    result.duration_s = time.perf_counter() - start
    return result, kept


def _describe(splits: Sequence[Split]) -> list[dict[str, str]]:
    return [{"name": s.name, "env": s.env, "role": s.role, "part": s.part} for s in splits if s.role != "source"]


def checkpoint_path(job: Job, epoch: int) -> Path:
    return Path(job.checkpoint_dir) / f"epoch-{epoch}.pt"


def save_checkpoint(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write-then-rename, so a killed run never leaves a half-written checkpoint behind; the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    try:
        torch.save(state, partial)
        digest = file_sha256(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return digest


def file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _load_states(job: Job, device: torch.device) -> dict[int, dict[str, torch.Tensor]] | None:
    """The kept checkpoints of a finished training, or None when one no longer loads (then it is retrained)."""
    try:
        return {e: torch.load(checkpoint_path(job, e), map_location=device, weights_only=True)
                for e in set(job.reuse_epochs.values())}
    except Exception:
        return None


def deploy_cell(job: Job, cell: TargetCell, algorithm: Algorithm, prepared: Prepared,
                states: dict[int, dict[str, torch.Tensor]], selected: dict[str, int]) -> CellResult:
    """Evaluate each selected network as ``cell.target`` runs it, on every device draw of a stochastic target;
    a failure fails this cell only."""
    start = time.perf_counter()
    target_class = get_plugins().registry("targets").get(cell.target)
    target = target_class(**cell.hparams)
    calibration = prepared.train[0].data.x[:CALIBRATION_SIZE]
    draws = draw_count(cell.hparams)
    by_epoch: dict[int, list[dict[str, EnvMetrics]]] = {}
    for epoch in sorted(set(selected.values())):
        algorithm.load_state_dict(states[epoch])
        network = algorithm.network().eval()
        # each draw gets its own copy: a target may change the network it is given
        by_epoch[epoch] = [evaluate(target.deploy(copy.deepcopy(network), calibration, draw_seed(job.seed, i)),
                                    prepared.splits, prepared.task.num_groups) for i in range(draws)]
    stochastic = DRAWS in getattr(target_class, "defaults", {})
    return CellResult(key=cell.key, status="done", selected=dict(selected),
                      results={rule: _mean_draws(by_epoch[epoch]) for rule, epoch in selected.items()},
                      draws={rule: by_epoch[epoch] for rule, epoch in selected.items()} if stochastic else {},
                      splits=_describe(prepared.splits), duration_s=time.perf_counter() - start)


def _mean_draws(draws: list[dict[str, EnvMetrics]]) -> dict[str, EnvMetrics]:
    return {name: mean_over_draws([d[name] for d in draws]) for name in draws[0]}


LIBRARIES = ("torch", "torchvision", "numpy", "snntorch", "memtorch", "pluggy")
"""Packages whose frames a failure's one-line summary skips: the line names the innermost frame of the code
that called them (the plugin's), not a line inside torch."""


def _library_roots() -> tuple[str, ...]:
    roots = [sysconfig.get_paths()["stdlib"]]
    for name in LIBRARIES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.append(str(Path(module.__file__).parent))
    return tuple(roots)


def _error_text(exc: BaseException) -> str:
    """``Type: message (at file.py:line)``, the frame being the innermost one outside the libraries."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    roots = _library_roots()
    own = [f for f in frames if not f.filename.startswith(roots)]
    where = (own or frames or [None])[-1]
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def run_job(job: Job, emit: Emit, on_epoch: EpochCallback | None = None) -> None:
    """Train (or reload) once, then deploy to every target, on ``job.threads`` torch threads where the matrix
    pins them; every outcome is emitted, nothing raised."""
    given = torch.get_num_threads()
    torch.set_num_threads(job.threads or given)
    try:
        _run_job(job, emit, on_epoch)
    finally:
        torch.set_num_threads(given)


def _run_job(job: Job, emit: Emit, on_epoch: EpochCallback | None) -> None:
    torch.manual_seed(job.seed)
    device = torch.device(job.device)
    try:
        prepared = prepare(job, device)
        algorithm = build_algorithm(job, prepared.task)
        states = _load_states(job, device) if job.reuse_epochs else None
        if states is not None:
            selected = dict(job.reuse_epochs)
        else:
            result, states = train(job, algorithm, prepared, on_epoch)
            selected = result.selected
            result.checkpoints = {epoch: save_checkpoint(state, checkpoint_path(job, epoch))
                                  for epoch, state in states.items()}
            emit(result)
    except Exception as exc:
        error, full = _error_text(exc), _traceback_text(exc)
        emit(TrainingResult(key=job.training_key, status="failed", error=error))  # the store keeps a finished one
        for cell in job.cells:
            emit(CellResult(key=cell.key, status="failed", error=f"training failed: {error}", traceback=full))
        return
    for cell in job.cells:
        try:
            emit(deploy_cell(job, cell, algorithm, prepared, states, selected))
        except Exception as exc:
            emit(CellResult(key=cell.key, status="failed", error=_error_text(exc), traceback=_traceback_text(exc)))
