"""Ranks under the profile's ordering: each tenant's queue in rank order (phase 2)
and the preemption class of every running job."""

from __future__ import annotations

import bisect
import functools

from mosu.core.models import GPU_MILLI, Job
from mosu.engine.cycle.work import INF, Work
from mosu.engine.ordering import (
    Fifo,
    LeastAttainedService,
    Rank,
    ShortestJobOracle,
    ShortestRemainingOracle,
)


class _Inputs:
    """What orderings may read: service, estimates, and (oracles only) true remaining."""

    def __init__(self, work: Work) -> None:
        self.work = work

    def service_gpu_s(self, job: Job) -> float:
        run = self.work.running.get(job.id)
        if run is not None:
            shape = job.shape
            gpus = shape.gpus * shape.gpu_milli * job.replicas / GPU_MILLI
            return run.attained_gpu_s + max(0.0, self.work.now - run.started_s) * gpus
        return self.work.snap.attained_gpu_s.get(job.id, 0.0)

    def estimate_s(self, job: Job) -> float | None:
        return job.estimate_s

    def true_remaining_s(self, job: Job) -> float:
        return self.work.snap.true_remaining_s.get(job.id, INF)


def order_queues(work: Work) -> None:
    ranks = work.ranks = _pending_ranks(work)
    # Ranks end with the job id, so they are unique and sorting by them alone is exact.
    ranked = work.ranked = sorted(work.snap.pending, key=lambda job: ranks[job.id])
    queues: dict[str, list[Job]] = {}
    for job in ranked:
        queue = queues.get(job.tenant)
        if queue is None:
            queue = queues[job.tenant] = []
        queue.append(job)
    work.queues = {name: queues[name] for name in sorted(queues)}


def _pending_ranks(work: Work) -> dict[str, Rank]:
    """Every pending job's rank; the orderings whose rank reads only the job and its
    true remaining time are computed inline (the same tuples, without the calls)."""
    ordering = work.profile.ordering
    pending = work.snap.pending
    if type(ordering) is Fifo:
        return {j.id: (-j.priority, j.submit_s, j.id) for j in pending}
    if type(ordering) in (ShortestJobOracle, ShortestRemainingOracle):
        remaining = work.snap.true_remaining_s
        return {j.id: (-j.priority, remaining.get(j.id, INF), j.submit_s, j.id) for j in pending}
    inputs = _Inputs(work)
    rank = ordering.rank
    return {j.id: rank(j, inputs) for j in pending}


def running_class_map(work: Work) -> dict[str, Rank]:
    """``run_classes``, computed on first need (running jobs only leave afterwards, so
    its keys include every job still running)."""
    if work.run_classes is None:
        work.run_classes = _running_classes(work)
    return work.run_classes


def _running_classes(work: Work) -> dict[str, Rank]:
    """The preemption class of every running job (a fast path for LAS)."""
    ordering = work.profile.ordering
    n = ordering.class_len
    if isinstance(ordering, LeastAttainedService):
        now = work.now
        queue_of = functools.partial(bisect.bisect_right, ordering.thresholds_gpu_s)
        return {
            job_id: (
                -run.job.priority,
                queue_of(
                    run.attained_gpu_s
                    + max(0.0, now - run.started_s)
                    * (run.job.shape.gpus * run.job.shape.gpu_milli * run.job.replicas / GPU_MILLI)
                ),
            )
            for job_id, run in work.running.items()
        }
    if type(ordering) in (ShortestJobOracle, ShortestRemainingOracle):
        remaining = work.snap.true_remaining_s
        return {
            job_id: (-run.job.priority, remaining.get(job_id, INF), run.job.submit_s, job_id)[:n]
            for job_id, run in work.running.items()
        }
    inputs = _Inputs(work)
    return {job_id: ordering.rank(run.job, inputs)[:n] for job_id, run in work.running.items()}
