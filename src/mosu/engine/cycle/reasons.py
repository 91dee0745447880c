"""Phase 7, closing the cycle: a typed reason and a start-time estimate (likely and
late, see ``eta``) for every job left pending, and the ``CycleResult``."""

from __future__ import annotations

from mosu.core.models import Job
from mosu.core.reasons import PendingReason
from mosu.engine.cycle.eta import StartPlanner
from mosu.engine.cycle.work import Outcome, Work
from mosu.engine.decisions import CycleResult, Held, Pending
from mosu.engine.estimates import EtaBasis

_REASON = {
    Outcome.QUOTA: (PendingReason.QUOTA_EXCEEDED, "starting it would exceed the tenant's quota"),
    Outcome.NO_FIT: (PendingReason.NO_FIT, "no placement fits right now"),
    Outcome.BLOCKED: (
        PendingReason.BLOCKED_BY_RESERVATION,
        "it would fit, but would delay a job holding a reservation",
    ),
    Outcome.NEVER: (PendingReason.NEVER_FITS, "no ready node of its GPU types is large enough"),
}
_WAITING = "within its guarantee; waiting for borrowed capacity to return"


def close_cycle(work: Work) -> CycleResult:
    explain = work.snap.explain
    wanted = work.snap.estimate_ids
    waiting = {j.id for j in work.waiting_guarantee}
    reserved = {r.job_id for r in work.reservations}
    planner = StartPlanner(work, work.snap.estimates)
    pending: list[Pending] = []

    words = {r: str(r) for r in PendingReason}
    bases = {b: str(b) for b in EtaBasis}

    def pend(job: Job, reason: PendingReason, message: str, estimate: bool = True) -> None:
        if not estimate:
            pending.append(Pending(job.id, reason, message))
            return
        eta = planner.estimate(job, words[reason], reclaim=job.id in waiting)
        pending.append(
            Pending(
                job.id,
                reason,
                message,
                eta.likely_s,
                eta.late_s,
                eta.planned_s,
                bases[eta.basis],
            )
        )

    if not explain and not wanted:
        # Only what the caller acts on: jobs waiting for their guarantee.
        for job in work.waiting_guarantee:
            if work.outcome.get(job.id) != Outcome.STARTED:
                pend(job, PendingReason.WAITING_FOR_GUARANTEE, _WAITING, estimate=False)
        return _result(work, pending)
    # In rank order, as the ranked queue lists them. Most jobs wait far behind in
    # their pool, where a release plan is unknown (not ``StartPlanner.near``): their
    # entry is written here without a plan.
    near = planner.near()
    releases = bases[EtaBasis.RELEASES]
    outcome_of = work.outcome.get
    started, never = Outcome.STARTED, Outcome.NEVER
    # Outcomes told apart by identity: an enum member's hash is a Python call, and
    # this runs once per queued job.
    no_fit, quota = Outcome.NO_FIT, Outcome.QUOTA
    no_fit_why, quota_why, blocked_why = (
        _REASON[no_fit],
        _REASON[quota],
        _REASON[Outcome.BLOCKED],
    )
    for job in work.ranked:
        job_id = job.id
        outcome = outcome_of(job_id)
        if outcome is started:
            continue
        if not explain and job_id not in wanted:
            if job_id in waiting:
                pend(job, PendingReason.WAITING_FOR_GUARANTEE, _WAITING, estimate=False)
            continue
        if job_id in waiting:
            pend(job, PendingReason.WAITING_FOR_GUARANTEE, _WAITING)
            continue
        if job_id in reserved:
            reason, message = PendingReason.RESERVED, "capacity is held for it"
        elif outcome is None:
            reason, message = PendingReason.QUEUED, "behind earlier jobs of its tenant"
        elif outcome is never:
            pend(job, *_REASON[never], estimate=False)
            continue
        else:
            reason, message = (
                no_fit_why if outcome is no_fit else quota_why if outcome is quota else blocked_why
            )
        if job_id not in near:
            pending.append(Pending(job_id, reason, message, None, None, None, releases))
        else:
            pend(job, reason, message)
    return _result(work, pending)


def _result(work: Work, pending: list[Pending]) -> CycleResult:
    return CycleResult(
        preemptions=tuple(work.preempts),
        starts=tuple(work.starts),
        pending=tuple(pending),
        reservations=held_capacity(work),
        wake_at_s=work.wake_s,
    )


def held_capacity(work: Work) -> tuple[Held, ...]:
    """Each reservation's nodes and the GPUs idle on them now, at most its need."""
    state = work.state
    held = []
    for r in work.reservations:
        nodes = sorted(r.nodes)
        idle = sum(sum(state.gpu_free[i]) for i in nodes if state.schedulable[i])
        names = tuple(state.nodes[i].name for i in nodes)
        held.append(Held(r.job_id, r.start_s, names, min(idle, r.need_milli)))
    return tuple(held)
