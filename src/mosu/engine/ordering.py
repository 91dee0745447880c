"""Queue orderings: how a tenant's pending jobs (and running jobs, for preemption) rank.

An ordering gives every job a ``rank``: a tuple whose first ``class_len`` items
are its *class* and whose rest breaks ties down to the job id. A pending job may
displace a running one only when its class is strictly better, so only orderings
whose class depends on more than priority (``preemptive``) ever preempt for rank.

A cycle asks an ordering for every rank at once (``rank_all``) and for every
running job's class at once (``running_classes``). ``RankedOrder`` answers both
with ``rank``; an ordering whose rank reads only the job (and its service or true
remaining time) computes the same tuples inline there, so a fast path and the
definition it speeds up live in one class and cannot disagree.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mosu.core.models import GPU_MILLI, Job, RunningJob

Rank = tuple[float | str, ...]


class RankInputs(Protocol):
    """What an ordering may read about a job, supplied by the cycle."""

    def service_gpu_s(self, job: Job) -> float:
        """GPU-seconds of service the job has received so far."""
        ...

    def estimate_s(self, job: Job) -> float | None:
        """The runtime estimate a real scheduler knows (the user's or history's)."""
        ...

    def true_remaining_s(self, job: Job) -> float:
        """The true remaining run time; only oracle orderings may ask."""
        ...

    @property
    def now(self) -> float:
        """The cycle's time (a running job's service grows with it)."""
        ...

    @property
    def true_remaining(self) -> Mapping[str, float]:
        """Job id -> true remaining run time (oracles only; absent means unknown)."""
        ...


class QueueOrder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def preemptive(self) -> bool:
        """Whether a better class may displace a running job."""
        ...

    @property
    def class_len(self) -> int:
        """How many leading items of a rank are its class."""
        ...

    def rank(self, job: Job, inputs: RankInputs) -> Rank: ...

    def rank_all(self, jobs: Sequence[Job], inputs: RankInputs) -> dict[str, Rank]:
        """Every job's ``rank``, by id."""
        ...

    def running_classes(
        self, running: Mapping[str, RunningJob], inputs: RankInputs
    ) -> dict[str, Rank]:
        """Every running job's class (the first ``class_len`` items of its rank), by id."""
        ...


def running_service_gpu_s(run: RunningJob, now: float) -> float:
    """GPU-seconds a running job has received by ``now``."""
    shape = run.job.shape
    gpus = shape.gpus * shape.gpu_milli * run.job.replicas / GPU_MILLI
    return run.attained_gpu_s + max(0.0, now - run.started_s) * gpus


class RankedOrder:
    """``rank_all`` and ``running_classes`` by calling ``rank`` once per job."""

    class_len: int

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        raise NotImplementedError

    def rank_all(self, jobs: Sequence[Job], inputs: RankInputs) -> dict[str, Rank]:
        rank = self.rank
        return {j.id: rank(j, inputs) for j in jobs}

    def running_classes(
        self, running: Mapping[str, RunningJob], inputs: RankInputs
    ) -> dict[str, Rank]:
        n = self.class_len
        return {job_id: self.rank(run.job, inputs)[:n] for job_id, run in running.items()}


@dataclass(frozen=True)
class Fifo(RankedOrder):
    """Priority, then submit time."""

    name: str = "fifo"
    preemptive: bool = False
    class_len: int = 1

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, job.submit_s, job.id)

    def rank_all(self, jobs: Sequence[Job], inputs: RankInputs) -> dict[str, Rank]:
        return {j.id: (-j.priority, j.submit_s, j.id) for j in jobs}


class _TrueRemainingOrder(RankedOrder):
    """Priority, then the true remaining run time (oracles), computed inline."""

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, inputs.true_remaining_s(job), job.submit_s, job.id)

    def rank_all(self, jobs: Sequence[Job], inputs: RankInputs) -> dict[str, Rank]:
        remaining = inputs.true_remaining
        return {j.id: (-j.priority, remaining.get(j.id, math.inf), j.submit_s, j.id) for j in jobs}

    def running_classes(
        self, running: Mapping[str, RunningJob], inputs: RankInputs
    ) -> dict[str, Rank]:
        remaining = inputs.true_remaining
        n = self.class_len
        return {
            job_id: (-run.job.priority, remaining.get(job_id, math.inf), run.job.submit_s, job_id)[
                :n
            ]
            for job_id, run in running.items()
        }


@dataclass(frozen=True)
class LeastAttainedService(RankedOrder):
    """Tiresias-style discretized two-dimensional LAS.

    Service is GPU-seconds (GPUs x time, the "2D"); a job sits in queue ``k`` once it
    has received ``thresholds_gpu_s[k-1]`` or more. Lower queues go first and may
    preempt higher ones; inside a queue, submit order.
    """

    name: str = "las"
    preemptive: bool = True
    class_len: int = 2
    thresholds_gpu_s: tuple[float, ...] = (3_600.0, 36_000.0)
    starve_after_s: float = math.inf
    """A job submitted this long ago or longer ranks in the first queue whatever its
    service (Tiresias's promotion of starved jobs): a gang demoted after a short run
    and then preempted would otherwise wait behind every fresh job. Running jobs are
    promoted alike, or a promoted job would displace an older one that, pending,
    would be promoted and displace it in turn."""

    def queue_of(self, service_gpu_s: float) -> int:
        return bisect.bisect_right(self.thresholds_gpu_s, service_gpu_s)

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        if inputs.now - job.submit_s >= self.starve_after_s:
            return (-job.priority, 0, job.submit_s, job.id)
        return (-job.priority, self.queue_of(inputs.service_gpu_s(job)), job.submit_s, job.id)

    def rank_all(self, jobs: Sequence[Job], inputs: RankInputs) -> dict[str, Rank]:
        if type(self).rank is not LeastAttainedService.rank:  # a subclass ranks otherwise
            return super().rank_all(jobs, inputs)
        # ``rank`` inline: this runs for every pending job each cycle.
        thresholds = self.thresholds_gpu_s
        queue_of = bisect.bisect_right
        service = inputs.service_gpu_s
        starved = inputs.now - self.starve_after_s  # -inf without promotion: none is
        return {
            j.id: (
                -j.priority,
                0 if j.submit_s <= starved else queue_of(thresholds, service(j)),
                j.submit_s,
                j.id,
            )
            for j in jobs
        }

    def running_classes(
        self, running: Mapping[str, RunningJob], inputs: RankInputs
    ) -> dict[str, Rank]:
        now = inputs.now
        thresholds = self.thresholds_gpu_s
        queue_of = bisect.bisect_right
        starved = now - self.starve_after_s
        classes: dict[str, Rank] = {}
        # ``running_service_gpu_s`` inline: this runs for every running job each cycle.
        for job_id, run in running.items():
            job = run.job
            if job.submit_s <= starved:
                classes[job_id] = (-job.priority, 0)
                continue
            shape = job.shape
            gpus = shape.gpus * shape.gpu_milli * job.replicas / GPU_MILLI
            ran = now - run.started_s
            service = run.attained_gpu_s + (ran if ran > 0.0 else 0.0) * gpus
            classes[job_id] = (-job.priority, queue_of(thresholds, service))
        return classes


@dataclass(frozen=True)
class GangScaledLAS(LeastAttainedService):
    """2D-LAS whose thresholds grow with the gang: a job of ``g`` GPUs is demoted once
    its service reaches ``threshold x max(1, g / unit_gpus)``. Up to ``unit_gpus`` GPUs
    (one node) it is plain 2D-LAS; a larger gang is demoted by its run time as a
    ``unit_gpus`` job would be, not within seconds of starting as GPU-seconds alone
    would have it."""

    name: str = "las-gang"
    unit_gpus: float = 8.0

    def _scale(self, job: Job) -> float:
        gpus = job.total_gpu_milli / GPU_MILLI
        return gpus / self.unit_gpus if gpus > self.unit_gpus else 1.0

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        service = inputs.service_gpu_s(job) / self._scale(job)
        return (-job.priority, self.queue_of(service), job.submit_s, job.id)

    def running_classes(
        self, running: Mapping[str, RunningJob], inputs: RankInputs
    ) -> dict[str, Rank]:
        now = inputs.now
        queue_of = functools.partial(bisect.bisect_right, self.thresholds_gpu_s)
        scale = self._scale
        return {
            job_id: (-run.job.priority, queue_of(running_service_gpu_s(run, now) / scale(run.job)))
            for job_id, run in running.items()
        }


@dataclass(frozen=True)
class ShortestJobOracle(_TrueRemainingOrder):
    """Reference only: true remaining time, never preempting (SJF)."""

    name: str = "sjf-oracle"
    preemptive: bool = False
    class_len: int = 1


@dataclass(frozen=True)
class ShortestRemainingOracle(_TrueRemainingOrder):
    """Reference only: true remaining time, preempting longer-remaining jobs (SRTF)."""

    name: str = "srtf-oracle"
    preemptive: bool = True
    class_len: int = 2


@dataclass(frozen=True)
class ShortestRemainingServiceOracle(RankedOrder):
    """Reference only: true remaining GPU-time (remaining run time x GPUs), preempting
    jobs with more (a two-dimensional SRTF, the oracle counterpart of 2D-LAS)."""

    name: str = "srtf-gpu-oracle"
    preemptive: bool = True
    class_len: int = 2

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        service = inputs.true_remaining_s(job) * job.total_gpu_milli / GPU_MILLI
        return (-job.priority, service, job.submit_s, job.id)
