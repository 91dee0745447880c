"""Phase 7, closing the cycle: a typed reason (and estimated start where known) for
every job left pending, and the ``CycleResult``."""

from __future__ import annotations

from mosu.core.reasons import PendingReason
from mosu.engine.cycle.work import Outcome, Work
from mosu.engine.decisions import CycleResult, Pending

_REASON = {
    Outcome.QUOTA: (PendingReason.QUOTA_EXCEEDED, "starting it would exceed the tenant's quota"),
    Outcome.NO_FIT: (PendingReason.NO_FIT, "no placement fits right now"),
    Outcome.BLOCKED: (
        PendingReason.BLOCKED_BY_RESERVATION,
        "it would fit, but would delay a job holding a reservation",
    ),
    Outcome.NEVER: (PendingReason.NEVER_FITS, "no ready node of its GPU types is large enough"),
}


def close_cycle(work: Work) -> CycleResult:
    reserved = {r.job_id: r.start_s for r in work.reservations}
    waiting = {j.id for j in work.waiting_guarantee}
    pending: list[Pending] = []
    if not work.snap.explain:
        for job in work.waiting_guarantee:
            if work.outcome.get(job.id) != Outcome.STARTED:
                pending.append(
                    Pending(
                        job.id,
                        PendingReason.WAITING_FOR_GUARANTEE,
                        "within its guarantee; waiting for borrowed capacity to return",
                        reserved.get(job.id),
                    )
                )
        return CycleResult(
            preemptions=tuple(work.preempts), starts=tuple(work.starts), pending=tuple(pending)
        )
    for queue in work.queues.values():
        ahead: float | None = None
        for job in queue:
            outcome = work.outcome.get(job.id)
            if outcome == Outcome.STARTED:
                continue
            if job.id in reserved:
                ahead = reserved[job.id]
            if job.id in waiting:
                pending.append(
                    Pending(
                        job.id,
                        PendingReason.WAITING_FOR_GUARANTEE,
                        "within its guarantee; waiting for borrowed capacity to return",
                        ahead,
                    )
                )
            elif job.id in reserved:
                pending.append(
                    Pending(job.id, PendingReason.RESERVED, "capacity is held for it", ahead)
                )
            elif outcome is None:
                pending.append(
                    Pending(
                        job.id, PendingReason.QUEUED, "behind earlier jobs of its tenant", ahead
                    )
                )
            else:
                reason, message = _REASON[outcome]
                pending.append(Pending(job.id, reason, message, ahead))
    pending.sort(key=lambda p: work.ranks[p.job_id])
    return CycleResult(
        preemptions=tuple(work.preempts), starts=tuple(work.starts), pending=tuple(pending)
    )
