"""``--executor ray``: every job a Ray task, on a Ray instance started here or on a cluster (``--address``).

Tasks return their results to this process, which alone writes the run's
SQLite store, exactly as with the process pool. ``ray`` is imported only
inside ``RayExecutor.run``; it is the optional extra ``oodbench[ray]``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

from oodbench.errors import UsageError
from oodbench.worker import OnResult, Progress, failed_results, run_collect
from oodbench.train import CellResult, Job, TrainingResult


def _run_job(job: Job, threads: int) -> list[TrainingResult | CellResult]:
    """The task body: limit torch to this task's share of the cores, then run the job."""
    import torch

    torch.set_num_threads(threads)
    return run_collect(job)


class RayExecutor:
    """Locally: a Ray instance of ``jobs`` CPUs, one per task, each task with its share of the machine's
    cores as torch threads. With ``address``: the cluster's CPUs decide how many tasks run at once, each
    with one torch thread."""

    name = "ray"

    def __init__(self, jobs: int = 1, address: str | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray: Ray is not installed (pip install 'oodbench[ray]'; "
                             "allowed without it: local, process)")
        self.jobs = max(1, jobs)
        self.address = address
        self.threads = 1 if address else max(1, (os.cpu_count() or 1) // self.jobs)

    def _init(self) -> bool:
        """Connect to the cluster or start a local instance; False when Ray was already running here."""
        import ray

        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.jobs, include_dashboard=False, log_to_driver=False)
        return True

    def run(self, jobs: Sequence[Job], on_result: OnResult, progress: Progress) -> None:
        import ray

        owned = self._init()
        try:
            task = ray.remote(num_cpus=1, max_retries=1)(_run_job)  # a worker that dies is retried once
            pending = {task.remote(job, self.threads): job for job in jobs}
            while pending:
                (done,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done)
                try:
                    results = ray.get(done)
                except ray.exceptions.RayError as exc:  # the worker or its node died
                    first = (str(exc).strip().splitlines() or [""])[0]
                    results = failed_results(job, f"Ray task failed: {type(exc).__name__}: {first}")
                for result in results:
                    on_result(result)
        finally:
            if owned:
                ray.shutdown()
