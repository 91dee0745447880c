"""Ranks under the profile's ordering: each tenant's queue in rank order (phase 2)
and the preemption class of every running job."""

from __future__ import annotations

from collections.abc import Mapping

from mosu.core.models import Job
from mosu.engine.cycle.work import INF, Work
from mosu.engine.ordering import Rank, running_service_gpu_s


class _Inputs:
    """What orderings may read: service, estimates, and (oracles only) true remaining."""

    def __init__(self, work: Work) -> None:
        self.work = work

    def service_gpu_s(self, job: Job) -> float:
        run = self.work.running.get(job.id)
        if run is not None:
            return running_service_gpu_s(run, self.work.now)
        return self.work.snap.attained_gpu_s.get(job.id, 0.0)

    def estimate_s(self, job: Job) -> float | None:
        return self.work.snap.estimate_of(job)

    def true_remaining_s(self, job: Job) -> float:
        return self.work.snap.true_remaining_s.get(job.id, INF)

    @property
    def now(self) -> float:
        return self.work.now

    @property
    def true_remaining(self) -> Mapping[str, float]:
        return self.work.snap.true_remaining_s


def order_queues(work: Work) -> None:
    ranks = work.ranks = work.profile.ordering.rank_all(work.snap.pending, _Inputs(work))
    # Ranks end with the job id, so they are unique and sorting by them alone is exact.
    ranked = work.ranked = sorted(work.snap.pending, key=lambda job: ranks[job.id])
    queues: dict[str, list[Job]] = {}
    for job in ranked:
        queue = queues.get(job.tenant)
        if queue is None:
            queue = queues[job.tenant] = []
        queue.append(job)
    work.queues = {name: queues[name] for name in sorted(queues)}


def running_class_map(work: Work) -> dict[str, Rank]:
    """``run_classes``, computed on first need (running jobs only leave afterwards, so
    its keys include every job still running)."""
    memo = work.memo
    if memo.run_classes is None:
        memo.run_classes = work.profile.ordering.running_classes(work.running, _Inputs(work))
    return memo.run_classes
