"""The frozen input of one scheduling cycle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mosu.core.models import Job, Node, RunningJob, Tenant


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the engine may know at time ``now`` (seconds, any epoch).

    ``attained_gpu_s`` holds GPU-seconds of service already received by pending
    jobs that ran before (preempted and requeued); running jobs carry theirs.
    """

    now: float
    nodes: tuple[Node, ...]
    tenants: tuple[Tenant, ...] = ()
    running: tuple[RunningJob, ...] = ()
    pending: tuple[Job, ...] = ()
    attained_gpu_s: Mapping[str, float] = field(default_factory=dict)
