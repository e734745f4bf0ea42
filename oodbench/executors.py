"""Executors: where jobs run. Results always come back to the caller, which alone writes the store."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from oodbench.errors import UsageError
from oodbench.train import CellResult, Job, TrainingResult, run_job
from oodbench.worker import OnResult, Progress, failed_results, run_collect


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


PARENT_POLL_S = 1.0
"""How often a pool worker checks that the process that started it is still alive."""


def _init_worker(threads: int, started: multiprocessing.queues.SimpleQueue, parent: int) -> None:
    """Limit torch to this worker's share of the cores, and exit when the parent dies: a SIGKILLed run must
    not leave workers training its queue into an unlocked run directory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="oodbench-parent-watch", daemon=True).start()
    import torch

    global _STARTED
    _STARTED = started
    torch.set_num_threads(threads)


_STARTED: multiprocessing.queues.SimpleQueue | None = None
"""In a pool worker: where it announces each job it starts, so the parent knows what a dead worker held."""


def _announced(job: Job) -> list[TrainingResult | CellResult]:
    """``run_collect`` in a pool worker, after telling the parent which job this worker now holds."""
    if _STARTED is not None:
        _STARTED.put(job.training_key)
    return run_collect(job)


class ProcessExecutor:
    """A pool of ``jobs`` worker processes, each limited to its share of the cores.

    A worker that dies (SIGKILL, out of memory) breaks the whole pool, so
    every job not yet returned is rerun in a fresh pool; the jobs that were
    running when it died are rerun one at a time first, and a job that kills
    its worker even alone is recorded as failed. Healthy jobs never fail for
    a neighbour's death.
    """

    name = "process"

    def __init__(self, jobs: int = 2) -> None:
        self.jobs = max(1, jobs)
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, jobs: Sequence[Job], on_result: OnResult, progress: Progress) -> None:
        queue, suspects = list(jobs), []
        while queue or suspects:
            if suspects:
                job = suspects.pop(0)
                if self._round([job], 1, on_result)[0]:
                    for result in failed_results(job, "worker process died twice, the second time running this "
                                                      "job alone (killed, or out of memory)"):
                        on_result(result)
                continue
            unfinished, started = self._round(queue, self.jobs, on_result)
            suspects = [job for job in unfinished if job.training_key in started]
            queue = [job for job in unfinished if job.training_key not in started]
            if queue and not suspects:  # the pool died before any job began: retrying would loop
                for job in queue:
                    for result in failed_results(job, "worker process died before starting this job"):
                        on_result(result)
                queue = []

    def _round(self, jobs: Sequence[Job], workers: int, on_result: OnResult) -> tuple[list[Job], set[str]]:
        """Run ``jobs`` in one pool until they finish or a worker dies: the jobs a death left unfinished, and
        the training keys of every job a worker started."""
        context = multiprocessing.get_context("spawn")
        started = context.SimpleQueue()  # written synchronously: a worker killed later has already said it
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(self.threads, started, os.getpid())) as pool:
            futures = {pool.submit(_announced, job): job for job in jobs}
            try:
                unfinished = self._collect(futures, on_result)
            except BaseException:  # Ctrl-C, or the store refused a write: stop now, not after the queue
                _stop(pool)
                raise
        return unfinished, set(_drain(started))

    @staticmethod
    def _collect(futures: dict, on_result: OnResult) -> list[Job]:
        """Hand each finished job's results to ``on_result``; the jobs a worker's death took."""
        unfinished = []
        for future in as_completed(futures):
            job = futures[future]
            try:
                results = future.result()
            except BrokenProcessPool:
                unfinished.append(job)
                continue
            except Exception as exc:  # the job's results could not come back (e.g. would not unpickle)
                results = failed_results(job, f"worker process failed: {type(exc).__name__}: {exc}")
            for result in results:
                on_result(result)
        return unfinished


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queue and end the running workers: their results could no longer be stored."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public handle on the workers
        process.terminate()


def _drain(queue: multiprocessing.queues.SimpleQueue) -> list[str]:
    """Everything put on ``queue`` so far (by live or dead workers)."""
    items = []
    while not queue.empty():
        items.append(queue.get())
    queue.close()
    return items


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
