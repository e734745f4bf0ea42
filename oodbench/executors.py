"""Executors: where jobs run. Results always come back to the caller, which alone writes the store."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Protocol, Sequence

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


def _run_collect(job: Job) -> list[TrainingResult | CellResult]:
    results: list[TrainingResult | CellResult] = []
    run_job(job, results.append)
    return results


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
            futures = {pool.submit(_run_collect, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    results = future.result()
                except Exception as exc:  # the worker died (killed, out of memory)
                    error = f"worker process failed: {type(exc).__name__}: {exc}"
                    results = [TrainingResult(key=job.training_key, status="failed", error=error)]
                    results += [CellResult(key=c.key, status="failed", error=error) for c in job.cells]
                for result in results:
                    on_result(result)


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "process": ProcessExecutor}
