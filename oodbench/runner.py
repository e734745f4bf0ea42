"""The matrix runner: plan cells, lock the run directory, dispatch jobs, store every result, resume."""

from __future__ import annotations

import fcntl
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from oodbench import __version__
from oodbench.errors import UsageError
from oodbench.executors import make_executor
from oodbench.matrix import Cell, Overrides, expand, load_matrix
from oodbench.plugins import PluginSet, get_plugins
from oodbench.store import STORE_NAME, Store
from oodbench.train import CellResult, Job, TrainingResult, checkpoint_path

LOCK_NAME = ".oodbench.lock"


@dataclass
class RunOptions:
    """What ``oodbench run`` was asked to do."""

    matrix: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    out: Path | None = None
    resume: bool = False
    executor: str = "local"
    jobs: int = 1
    address: str | None = None
    device: str = "cpu"
    data_dir: Path | None = None
    argv: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    run_dir: Path
    counts: Counter
    failed: list[dict]


class RunLock:
    """An exclusive lock on a run directory, so two runs never write one store."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.handle = None

    def __enter__(self) -> RunLock:
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UsageError(f"{self.path.parent}: run directory is in use by oodbench pid {holder}; "
                             "wait for it or choose another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _installed_parts(origins: dict[str, tuple[str, str, str]]) -> str:
    """`` (algorithm 'x' from oodbench-x 0.2.0)``: the installed distributions a failed cell ran, so its
    message names whom to ask; empty when the cell used only oodbench's built-ins."""
    parts = [f"{kind} {name!r} from {dist} {version}" for kind, (name, dist, version) in origins.items()
             if dist != "oodbench"]
    return f" ({', '.join(parts)})" if parts else ""


class TqdmProgress:
    """One bar for cells and one for the current job's epochs; silent when stderr is not a TTY."""

    def __init__(self, total_cells: int) -> None:
        self.cells = tqdm(total=total_cells, desc="cells", unit="cell", position=0, disable=None)
        self.epochs = tqdm(total=0, desc="epochs", unit="epoch", position=1, leave=False, disable=None)

    def start_job(self, job: Job) -> None:
        self.epochs.reset(total=job.training["epochs"])
        self.epochs.set_description(f"{job.dataset}/{job.backbone}/{job.algorithm}/seed{job.seed}")

    def epoch(self, epoch: int, total: int) -> None:
        self.epochs.update(1)

    def cell_done(self, label: str, result: CellResult, origins: dict[str, tuple[str, str, str]]) -> None:
        self.cells.update(1)
        if result.status == "failed":
            tqdm.write(f"oodbench: cell {label} failed: {result.error}{_installed_parts(origins)}", file=sys.stderr)

    def close(self) -> None:
        self.epochs.close()
        self.cells.close()


def default_run_dir(matrix_name: str) -> Path:
    return Path("runs") / f"{matrix_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _reusable(store: Store, job: Job) -> dict[str, int] | None:
    """Selected epochs of a finished training whose checkpoints are all on disk: no need to train again."""
    selected = store.finished_training(job.training_key)
    if selected and all(checkpoint_path(job, e).is_file() for e in set(selected.values())):
        return selected
    return None


def plan_jobs(store: Store, cells: list[Cell], run_dir: Path, options: RunOptions) -> list[Job]:
    """Cells still to do, grouped so each trained network serves every target of its cell."""
    status = store.cell_status()
    todo: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        if cell.skip_reason is None and status.get(cell.key) != "done":
            todo[cell.training_key].append(cell)
    jobs = []
    data_dir = str(options.data_dir) if options.data_dir else None
    for group in todo.values():
        job = Job.from_cells(group, run_dir, options.device, data_dir)
        job.reuse_epochs = _reusable(store, job)
        jobs.append(job)
    return jobs


def _versions() -> dict[str, str]:
    return {"oodbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _spec_hashes(plugins: PluginSet, cells: list[Cell]) -> dict[str, str | None]:
    """The spec hash of each dataset in the run (None for a dataset defined by code, not a spec file):
    the leaderboard compares only results built from identical data."""
    registry = plugins.registry("datasets")
    return {name: getattr(registry.get(name), "spec_hash", None) for name in sorted({c.dataset for c in cells})}


def _plan_record(options: RunOptions) -> dict:
    o = options.overrides
    return {"matrix": options.matrix, "filters": o.filters, "seeds": o.seeds, "epochs": o.epochs,
            "sets": [list(item) for item in o.sets], "n_hparams": o.n_hparams, "trials": o.trials}


def check_unchanged(store: Store, plugins: PluginSet, specs: dict[str, str | None]) -> None:
    """Refuse to add results to a run whose finished cells came from other data or other plugin versions:
    the report would average the two without a word."""
    stored = store.meta().get("dataset_specs", {})
    for name, spec in specs.items():
        if name in stored and stored[name] != spec:
            raise UsageError(f"--resume: dataset {name}'s spec changed since this run started "
                             f"({str(stored[name])[:12]} -> {str(spec)[:12]}); its finished cells used the old data: "
                             f"restore the spec or run into a new --out")
    seen = set()
    for cell_plugins in store.cell_plugins().values():
        for kind, used in cell_plugins.items():
            registry = plugins.registry(f"{kind}s")
            if (kind, used["name"]) in seen or used["name"] not in registry:
                continue
            seen.add((kind, used["name"]))
            dist, version = plugins.dist_of(f"{kind}s", used["name"])
            if (dist, version) != (used["dist"], used["version"]):
                raise UsageError(f"--resume: {kind} {used['name']!r} is now {dist} {version}; this run's finished "
                                 f"cells used {used['dist']} {used['version']}: reinstall that version or run into a "
                                 f"new --out")


def _stored_plan(run_dir: Path) -> tuple[str | None, Overrides] | None:
    """The matrix and overrides a run was started with, so a bare ``--resume`` finishes that run."""
    if not (run_dir / STORE_NAME).is_file():
        return None
    with Store.in_dir(run_dir) as store:
        plan = store.meta().get("plan")
    if plan is None:
        return None
    return plan["matrix"], Overrides(filters=plan["filters"], seeds=plan["seeds"], epochs=plan["epochs"],
                                     sets=[tuple(item) for item in plan["sets"]], n_hparams=plan.get("n_hparams"),
                                     trials=plan.get("trials"))


def run_matrix(options: RunOptions) -> RunSummary:
    """Run (or resume) a matrix into a run directory; failed cells are recorded, never raised.

    ``--resume`` with no matrix, filters or overrides finishes the run as it
    was started; with them, it runs what they select into the same directory.
    """
    if options.resume and options.out and options.matrix is None and options.overrides == Overrides():
        stored = _stored_plan(options.out)
        if stored:
            options.matrix, options.overrides = stored
    executor = make_executor(options.executor, options.jobs, options.address)
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (allowed: cpu)")
    plugins = get_plugins()
    matrix = load_matrix(options.matrix)
    cells = expand(matrix, plugins, options.overrides)
    if not cells:
        raise UsageError(f"{matrix.source}: the matrix and filters select no cells")
    run_dir = options.out or default_run_dir(matrix.name)
    exists = (run_dir / STORE_NAME).exists()
    if exists and not options.resume:
        raise UsageError(f"--out {run_dir}: already holds a run; pass --resume to finish it or choose another --out")
    if options.resume and not exists:
        raise UsageError(f"--resume: {run_dir} holds no run to resume (expected {run_dir / STORE_NAME})")
    run_dir.mkdir(parents=True, exist_ok=True)
    by_key = {c.key: c for c in cells}
    with RunLock(run_dir), Store.in_dir(run_dir) as store:
        started = {"resumed_at": time.time()} if exists else {"created_at": time.time(), "plan": _plan_record(options)}
        current = _spec_hashes(plugins, cells)
        if exists:
            check_unchanged(store, plugins, current)
        specs = store.meta().get("dataset_specs", {}) | current
        store.set_meta(started | {"argv": options.argv, "matrix": matrix.as_dict(), "versions": _versions(),
                                  "executor": options.executor, "device": options.device, "dataset_specs": specs})
        store.plan(cells)
        jobs = plan_jobs(store, cells, run_dir, options)
        progress = TqdmProgress(sum(len(j.cells) for j in jobs))

        def on_result(result: TrainingResult | CellResult) -> None:
            if isinstance(result, TrainingResult):
                store.record_training(result)
                return
            cell = by_key[result.key]
            origins = {kind[:-1]: (name, *plugins.dist_of(kind, name)) for kind, name in (
                ("datasets", cell.dataset), ("backbones", cell.backbone), ("algorithms", cell.algorithm),
                ("targets", cell.target))}
            store.record_cell(result, origins)
            progress.cell_done(cell.label(), result, origins)

        try:
            executor.run(jobs, on_result, progress)
        finally:
            progress.close()
        status = store.cell_status()
        counts = Counter(status[c.key] for c in cells)
        failed = [c for c in store.cells("failed") if c["key"] in by_key]
    return RunSummary(run_dir, counts, failed)
