"""Queue orderings: how a tenant's pending jobs (and running jobs, for preemption) rank.

An ordering gives every job a ``rank``: a tuple whose first ``class_len`` items
are its *class* and whose rest breaks ties down to the job id. A pending job may
displace a running one only when its class is strictly better, so only orderings
whose class depends on more than priority (``preemptive``) ever preempt for rank.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Protocol

from mosu.core.models import GPU_MILLI, Job

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


class QueueOrder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def preemptive(self) -> bool: ...

    @property
    def class_len(self) -> int: ...

    def rank(self, job: Job, inputs: RankInputs) -> Rank: ...


@dataclass(frozen=True)
class Fifo:
    """Priority, then submit time."""

    name: str = "fifo"
    preemptive: bool = False
    class_len: int = 1

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, job.submit_s, job.id)


@dataclass(frozen=True)
class ShortestEstimateFirst:
    """Priority, then the smallest estimated GPU-time (unknown estimates last)."""

    name: str = "shortest-estimate"
    preemptive: bool = False
    class_len: int = 1

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        est = inputs.estimate_s(job)
        gpu_time = math.inf if est is None else est * job.total_gpu_milli
        return (-job.priority, gpu_time, job.submit_s, job.id)


@dataclass(frozen=True)
class LeastAttainedService:
    """Tiresias-style discretized two-dimensional LAS.

    Service is GPU-seconds (GPUs x time, the "2D"); a job sits in queue ``k`` once it
    has received ``thresholds_gpu_s[k-1]`` or more. Lower queues go first and may
    preempt higher ones; inside a queue, submit order.
    """

    name: str = "las"
    preemptive: bool = True
    class_len: int = 2
    thresholds_gpu_s: tuple[float, ...] = (3_600.0, 36_000.0)

    def queue_of(self, service_gpu_s: float) -> int:
        return bisect.bisect_right(self.thresholds_gpu_s, service_gpu_s)

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, self.queue_of(inputs.service_gpu_s(job)), job.submit_s, job.id)


@dataclass(frozen=True)
class ShortestJobOracle:
    """Reference only: true remaining time, never preempting (SJF)."""

    name: str = "sjf-oracle"
    preemptive: bool = False
    class_len: int = 1

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, inputs.true_remaining_s(job), job.submit_s, job.id)


@dataclass(frozen=True)
class ShortestRemainingOracle:
    """Reference only: true remaining time, preempting longer-remaining jobs (SRTF)."""

    name: str = "srtf-oracle"
    preemptive: bool = True
    class_len: int = 2

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        return (-job.priority, inputs.true_remaining_s(job), job.submit_s, job.id)


@dataclass(frozen=True)
class ShortestRemainingServiceOracle:
    """Reference only: true remaining GPU-time (remaining run time x GPUs), preempting
    jobs with more (a two-dimensional SRTF, the oracle counterpart of 2D-LAS)."""

    name: str = "srtf-gpu-oracle"
    preemptive: bool = True
    class_len: int = 2

    def rank(self, job: Job, inputs: RankInputs) -> Rank:
        service = inputs.true_remaining_s(job) * job.total_gpu_milli / GPU_MILLI
        return (-job.priority, service, job.submit_s, job.id)
