"""The frozen input of one scheduling cycle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mosu.core.models import Job, Node, RunningJob, Tenant
from mosu.engine.estimates import StartEstimates
from mosu.engine.state import ClusterState


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the engine may know at time ``now`` (seconds, any epoch).

    ``attained_gpu_s`` holds GPU-seconds of service already received by pending
    jobs that ran before (preempted and requeued). A running job's service is its
    ``RunningJob.attained_gpu_s`` (what it had received before ``started_s``) plus
    ``now - started_s`` times its GPUs.

    ``true_remaining_s`` (job id -> seconds) is filled only for profiles that
    declare ``needs_true_remaining`` (oracle references); the engine reads it for
    nothing else.

    ``base_state``, when given, is a ``ClusterState`` already holding exactly the
    running allocations; a caller that keeps one across cycles (the simulator)
    passes it to skip rebuilding. The cycle works on it inside a checkpoint and
    rolls every change back before returning, so the caller sees it unchanged.

    ``usage_milli`` ((tenant, GPU type) -> allocated milli of the running jobs)
    may be passed by a caller that keeps it up to date, to skip recounting.

    ``running_by_id`` (job id -> the same ``RunningJob``s as ``running``, in the same
    order) may be passed by a caller that keeps it, to skip rebuilding it each cycle.

    ``explain`` False asks only for the pending entries a caller acts on (jobs
    waiting for their guarantee, jobs holding a reservation); the simulator uses
    it to skip building a reason for every queued job on every cycle.
    ``estimate_ids`` names jobs that get a full pending entry (reason and estimated
    start) even so: the simulator asks for the jobs that just arrived.

    ``estimates`` (run-time history, the spread of past start estimates, the stop
    grace) is read only to estimate start times, never to decide.

    ``history_estimates`` ((tenant, total GPU milli) -> run time) is what history
    gives the jobs of that tenant and size that have no estimate of their own
    (``Job.estimate_s`` None), for profiles that plan with history's estimates
    (``estimate_of``). A caller that keeps its jobs across cycles (the platform) moves
    one number when history moves instead of rebuilding every job of the size; the
    simulator fills ``Job.estimate_s`` itself and leaves this empty.
    """

    now: float
    nodes: tuple[Node, ...]
    tenants: tuple[Tenant, ...] = ()
    running: tuple[RunningJob, ...] = ()
    pending: tuple[Job, ...] = ()
    attained_gpu_s: Mapping[str, float] = field(default_factory=dict)
    true_remaining_s: Mapping[str, float] = field(default_factory=dict)
    base_state: ClusterState | None = None
    usage_milli: Mapping[tuple[str, str], int] | None = None
    running_by_id: Mapping[str, RunningJob] | None = None
    explain: bool = True
    estimate_ids: frozenset[str] = frozenset()
    estimates: StartEstimates | None = None
    history_estimates: Mapping[tuple[str, int], float | None] = field(default_factory=dict)

    def estimate_of(self, job: Job) -> float | None:
        """The run time the engine plans ``job`` with: its own estimate, else the one
        ``history_estimates`` gives its tenant and size."""
        if job.estimate_s is not None or not self.history_estimates:
            return job.estimate_s
        return self.history_estimates.get((job.tenant, job.total_gpu_milli))
