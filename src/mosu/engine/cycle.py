"""One scheduling cycle: ``schedule(snapshot, profile) -> CycleResult``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mosu.core.reasons import PendingReason
from mosu.engine.decisions import CycleResult, Pending, Start
from mosu.engine.placement.base import PlacementPolicy, place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState


@dataclass(frozen=True)
class SchedulingProfile:
    """Which policies a cycle uses."""

    name: str = "default"
    placement: PlacementPolicy = field(default_factory=BestFit)


def schedule(snapshot: ClusterSnapshot, profile: SchedulingProfile) -> CycleResult:
    """Decide what starts now. Same snapshot and profile, same result."""
    # 1. Rebuild free capacity from the running allocations.
    state = ClusterState(snapshot.nodes)
    for run in sorted(snapshot.running, key=lambda r: r.job.id):
        state.assign(run.job.id, run.placement)
    state.commit()
    # 2. Order the queue: priority, then submit time, then id.
    queue = sorted(snapshot.pending, key=lambda j: (-j.priority, j.submit_s, j.id))
    # 3. Place in order, without disturbing anyone.
    starts: list[Start] = []
    pending: list[Pending] = []
    for job in queue:
        placement = place_job(state, job, profile.placement)
        if placement is None:
            pending.append(Pending(job.id, PendingReason.NO_FIT, "no placement fits right now"))
            continue
        state.assign(job.id, placement)
        starts.append(Start(job.id, placement))
    return CycleResult(starts=tuple(starts), pending=tuple(pending))
