"""What every executor shares: the callback types, and running a job away from the store.

Workers (pool processes, Ray tasks) never write the store: they hand their
results back, and the caller alone records them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from oodbench.train import CellResult, Job, TrainingResult, run_job

OnResult = Callable[[TrainingResult | CellResult], None]


class Progress(Protocol):
    def start_job(self, job: Job) -> None: ...

    def epoch(self, epoch: int, total: int) -> None: ...


def run_collect(job: Job) -> list[TrainingResult | CellResult]:
    """Run a job and hand every result back at the end."""
    results: list[TrainingResult | CellResult] = []
    run_job(job, results.append)
    return results


def failed_results(job: Job, error: str) -> list[TrainingResult | CellResult]:
    """What a job whose worker died (killed, out of memory, lost node) stores: its training and cells as failed
    (the store keeps a training or cell that had finished before as it was)."""
    return [TrainingResult(key=job.training_key, status="failed", error=error),
            *(CellResult(key=c.key, status="failed", error=error) for c in job.cells)]
