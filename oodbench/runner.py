"""The matrix runner: plan cells, lock the run directory, dispatch jobs, store every result, resume."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from oodbench import __version__
from oodbench.errors import StorageError, UsageError
from oodbench.data.mnist import load_mnist
from oodbench.executors import make_executor
from oodbench.matrix import Cell, Overrides, expand, load_matrix
from oodbench.numerics import fingerprint
from oodbench.plugins import PluginSet, get_plugins
from oodbench.store import STORE_NAME, Store
from oodbench.train import CellResult, Job, TrainingResult, checkpoint_path, file_sha256

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
    dry_run: bool = False
    argv: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    run_dir: Path
    counts: Counter
    failed: list[dict]
    planned: list[Cell] = field(default_factory=list)
    """With ``dry_run``: every cell the command selects (nothing was created, trained or stored)."""


class RunLock:
    """An exclusive lock on a run directory, so two runs never write one store."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.handle = None

    def __enter__(self) -> RunLock:
        try:
            self.handle = open(self.path, "a+")
        except OSError as error:
            raise StorageError(f"{self.path}: cannot create the run's lock file ({error})") from None
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UsageError(f"{self.path.parent}: run directory is in use by oodbench pid {holder}; wait for it to "
                             "finish (then --resume adds to it) or choose another --out") from None
        try:  # unbuffered, so a full disk says so here and not when the file is closed
            os.ftruncate(self.handle.fileno(), 0)
            os.pwrite(self.handle.fileno(), str(os.getpid()).encode(), 0)
        except OSError as error:
            self.handle.close()
            raise StorageError(f"{self.path}: cannot write the run's lock file ({error}); nothing was run") from None
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
    """On a TTY, one bar for cells and one for the current job's epochs. Elsewhere (a CI log, ``nohup``, a
    pipe) bars would be silent, so each finished cell prints one line with the elapsed time and an ETA."""

    def __init__(self, total_cells: int, trainings: int = 0) -> None:
        self.total, self.finished = total_cells, 0
        self.started = time.monotonic()
        self.lines = not sys.stderr.isatty()
        if self.lines and total_cells:
            print(f"oodbench: {total_cells} cells to run ({trainings} trainings); a line as each finishes",
                  file=sys.stderr, flush=True)
        self.cells = tqdm(total=total_cells, desc="cells", unit="cell", position=0, disable=None)
        self.epochs = tqdm(total=0, desc="epochs", unit="epoch", position=1, leave=False, disable=None)

    def start_job(self, job: Job) -> None:
        self.epochs.reset(total=job.training["epochs"])
        self.epochs.set_description(f"{job.dataset}/{job.backbone}/{job.algorithm}/seed{job.seed}")

    def epoch(self, epoch: int, total: int) -> None:
        self.epochs.update(1)

    def cell_done(self, label: str, result: CellResult, origins: dict[str, tuple[str, str, str]]) -> None:
        self.cells.update(1)
        self.finished += 1
        if result.status == "failed":
            tqdm.write(f"oodbench: cell {label} failed: {result.error}{_installed_parts(origins)}", file=sys.stderr)
        if self.lines:
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.finished * (self.total - self.finished)
            print(f"oodbench: [{self.finished}/{self.total}] {result.status} {label} "
                  f"(elapsed {_clock(elapsed)}, ETA {_clock(eta)})", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.epochs.close()
        self.cells.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def default_run_dir(matrix_name: str) -> Path:
    return Path("runs") / f"{matrix_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _reusable(store: Store, job: Job) -> dict[str, int] | None:
    """Selected epochs of a finished training whose checkpoints are all on disk with the sha256 recorded when
    they were written: no need to train again. A missing, damaged or unrecorded file means retraining."""
    selected = store.finished_training(job.training_key)
    if not selected:
        return None
    digests = store.checkpoint_digests(job.training_key)
    for epoch in set(selected.values()):
        path = checkpoint_path(job, epoch)
        if epoch not in digests or not path.is_file() or file_sha256(path) != digests[epoch]:
            return None
    return selected


def plan_jobs(store: Store, cells: list[Cell], run_dir: Path, options: RunOptions,
              threads: int | None = None) -> list[Job]:
    """Cells still to do, grouped so each trained network serves every target of its cell.

    A finished training that must be retrained (its checkpoints are gone or
    damaged) takes all its cells along, done ones too, so no cell's results
    come from a network other than the one its training's curves describe.
    """
    status = store.cell_status()
    todo: dict[str, list[Cell]] = defaultdict(list)
    by_training: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        if cell.skip_reason is None:
            by_training[cell.training_key].append(cell)
            if status.get(cell.key) != "done":
                todo[cell.training_key].append(cell)
    jobs = []
    data_dir = str(options.data_dir) if options.data_dir else None
    for key, group in todo.items():
        job = Job.from_cells(group, run_dir, options.device, data_dir, threads=threads)
        job.reuse_epochs = _reusable(store, job)
        if job.reuse_epochs is None and len(by_training[key]) > len(group):
            job = Job.from_cells(by_training[key], run_dir, options.device, data_dir, threads=threads)
        jobs.append(job)
    return jobs


def _versions() -> dict[str, str]:
    return {"oodbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "numerics": fingerprint()}


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
    with Store.in_dir(run_dir, readonly=True) as store:
        plan = store.meta().get("plan")
    if plan is None:
        return None
    return plan["matrix"], Overrides(filters=plan["filters"], seeds=plan["seeds"], epochs=plan["epochs"],
                                     sets=[tuple(item) for item in plan["sets"]], n_hparams=plan.get("n_hparams"),
                                     trials=plan.get("trials"))


def _holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a store (a 0-byte one, left by a kill before the first write, counts as none)."""
    path = run_dir / STORE_NAME
    return path.is_file() and path.stat().st_size > 0


def _make_run_dir(run_dir: Path) -> bool:
    """Create the run directory (True if this call created it); one line when that is impossible."""
    existed = run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {run_dir}: cannot create the run directory ({error.strerror or error})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--out {run_dir}: the run directory is not writable (choose another --out)")
    return not existed


def _time_keys(plugins: PluginSet, cells: list[Cell]) -> dict[str, str]:
    """Per target of the run that names one, its time-since-programming hyperparameter (reports plot it)."""
    registry = plugins.registry("targets")
    keys = {name: getattr(registry.get(name), "time_key", None) for name in {c.target for c in cells}
            if name in registry}
    return {name: key for name, key in keys.items() if key}


def _start(store: Store, options: RunOptions, matrix, plugins: PluginSet, cells: list[Cell], exists: bool) -> None:
    """Record the run's configuration and plan its cells; a resume first proves nothing it adds would mix."""
    current = _spec_hashes(plugins, cells)
    meta = store.meta()
    if exists:
        check_unchanged(store, plugins, current)
        started = {"resumes": [*meta.get("resumes", []), {"argv": options.argv, "at": time.time()}]}
    else:
        started = {"created_at": time.time(), "plan": _plan_record(options), "argv": options.argv}
    specs = meta.get("dataset_specs", {}) | current
    times = meta.get("time_keys", {}) | _time_keys(plugins, cells)
    store.set_meta(started | {"matrix": matrix.as_dict(), "versions": _versions(), "executor": options.executor,
                              "device": options.device, "dataset_specs": specs, "time_keys": times})
    store.plan(cells)


def _execute(store: Store, cells: list[Cell], by_key: dict[str, Cell], plugins: PluginSet, run_dir: Path,
             options: RunOptions, executor, threads: int | None) -> tuple[Counter, list[dict]]:
    """Dispatch the jobs still to do (each on the matrix's ``threads``) and store each result the moment it
    comes back."""
    jobs = plan_jobs(store, cells, run_dir, options, threads)
    progress = TqdmProgress(sum(len(j.cells) for j in jobs), len(jobs))

    def on_result(result: TrainingResult | CellResult) -> None:
        try:
            if isinstance(result, TrainingResult):
                store.record_training(result)
                return
            cell = by_key[result.key]
            origins = {kind[:-1]: (name, *plugins.dist_of(kind, name)) for kind, name in (
                ("datasets", cell.dataset), ("backbones", cell.backbone), ("algorithms", cell.algorithm),
                ("targets", cell.target))}
            store.record_cell(result, origins)
        except sqlite3.OperationalError as error:  # disk full, read-only: stop, keep what is stored
            raise StorageError(f"{store.path}: could not record a result ({error}); every result before it is "
                               f"stored: fix the cause, then continue with --resume") from None
        progress.cell_done(cell.label(), result, origins)

    try:
        executor.run(jobs, on_result, progress)
    finally:
        progress.close()
    status = store.cell_status()
    counts = Counter(status[c.key] for c in cells)
    failed = [c for c in store.cells("failed") if c["key"] in by_key]
    return counts, failed


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
    datasets = plugins.registry("datasets")
    for name in sorted({c.dataset for c in cells if c.skip_reason is None}):
        reason = getattr(datasets.get(name), "unusable", None)
        if reason:
            raise UsageError(f"dataset {name!r} cannot be used: {reason}")
    if options.data_dir is not None:  # a wrong directory is one line now, not a failure in every cell
        load_mnist(options.data_dir)
    run_dir = options.out or default_run_dir(matrix.name)
    exists = _holds_run(run_dir)
    if exists and not options.resume:
        raise UsageError(f"--out {run_dir}: already holds a run; pass --resume to finish it or choose another --out")
    if options.resume and not exists:
        raise UsageError(f"--resume: {run_dir} holds no run to resume (expected {run_dir / STORE_NAME})")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir}: is a file, not a directory (choose another --out)")
    if options.dry_run:
        return RunSummary(run_dir, Counter("skipped" if c.skip_reason else "planned" for c in cells), [], cells)
    created = _make_run_dir(run_dir)
    by_key = {c.key: c for c in cells}
    planned = False
    try:
        with RunLock(run_dir), Store.in_dir(run_dir) as store:
            _start(store, options, matrix, plugins, cells, exists)
            planned = True
            counts, failed = _execute(store, cells, by_key, plugins, run_dir, options, executor, matrix.threads)
    except BaseException:
        if created and not planned:  # nothing recorded: leave no directory that refuses the corrected command
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return RunSummary(run_dir, counts, failed)
