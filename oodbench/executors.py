"""Executors: where jobs run. Results always come back to the caller, which alone writes the store."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Protocol

from oodbench.errors import UsageError
from oodbench.train import CellResult, Job, TrainingResult, run_job

OnResult = Callable[[TrainingResult | CellResult], None]


class Progress(Protocol):
    def start_job(self, job: Job) -> None: ...

    def epoch(self, epoch: int, total: int) -> None: ...


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], on_result: OnResult, progress: Progress) -> None: ...


class LocalExecutor:
    """In this process, one job after another; results are stored the moment they exist."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        """``jobs`` is accepted for a uniform interface; in-process work is sequential."""

    def run(self, jobs: Sequence[Job], on_result: OnResult, progress: Progress) -> None:
        for job in jobs:
            progress.start_job(job)
            run_job(job, on_result, on_epoch=progress.epoch)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_collect(job: Job) -> list[TrainingResult | CellResult]:
    """Run a job away from the store and hand every result back at the end (workers never write the store)."""
    results: list[TrainingResult | CellResult] = []
    run_job(job, results.append)
    return results


def failed_results(job: Job, error: str) -> list[TrainingResult | CellResult]:
    """What a job whose worker died (killed, out of memory, lost node) stores: its training and cells as failed."""
    return [TrainingResult(key=job.training_key, status="failed", error=error),
            *(CellResult(key=c.key, status="failed", error=error) for c in job.cells)]


class ProcessExecutor:
    """A pool of ``jobs`` worker processes, each limited to its share of the cores."""

    name = "process"

    def __init__(self, jobs: int = 2) -> None:
        self.jobs = max(1, jobs)
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, jobs: Sequence[Job], on_result: OnResult, progress: Progress) -> None:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(self.threads,)) as pool:
            futures = {pool.submit(run_collect, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    results = future.result()
                except Exception as exc:  # the worker died (killed, out of memory)
                    results = failed_results(job, f"worker process failed: {type(exc).__name__}: {exc}")
                for result in results:
                    on_result(result)


EXECUTORS = ("local", "process", "ray")


def make_executor(name: str, jobs: int = 1, address: str | None = None) -> Executor:
    """The executor ``--executor NAME`` asks for; Ray is imported only when it is the one chosen."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r}: unknown (allowed: {', '.join(EXECUTORS)})")
    if address is not None and name != "ray":
        raise UsageError(f"--address {address}: only --executor ray joins a cluster (got --executor {name})")
    if name == "ray":
        from oodbench.executors_ray import RayExecutor

        return RayExecutor(jobs, address)
    return ProcessExecutor(jobs) if name == "process" else LocalExecutor(jobs)
