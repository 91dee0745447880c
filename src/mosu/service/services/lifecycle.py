"""Job state machine: every transition is an event row in the same transaction.

pending → starting → running → succeeded | failed | cancelled, and
starting | running → preempted → pending. A job being stopped (preemption,
cancel, max runtime) stays running, holding its GPUs, until its processes exit;
``stop_reason`` says what the exit will mean.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.errors import Conflict
from mosu.core.models import GPU_MILLI
from mosu.core.reasons import StopReason
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, UsageRow
from mosu.service.services.credits_meter import meter_stop

P, S, R = JobState.PENDING, JobState.STARTING, JobState.RUNNING
ALLOWED: dict[str, frozenset[JobState]] = {
    P: frozenset({S, JobState.CANCELLED}),
    S: frozenset({R, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED}),
    R: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED}),
    JobState.PREEMPTED: frozenset({P}),
}


def transition(
    session: Session,
    job: JobRow,
    to: JobState,
    *,
    reason: str | None = None,
    message: str = "",
    now: float | None = None,
) -> None:
    allowed = ALLOWED.get(job.state, frozenset())
    if to not in allowed:
        raise Conflict(f"job {job.id} is {job.state}; it cannot become {to.value}")
    at = time.time() if now is None else now
    session.add(
        EventRow(
            at=at,
            job_id=job.id,
            tenant=job.tenant,
            kind="state",
            from_state=job.state,
            to_state=to.value,
            reason=reason,
            message=message,
        )
    )
    job.state = to.value
    if to.finished:
        job.finished_at = at
    if to in (JobState.PENDING, *[s for s in JobState if s.finished]):
        job.stop_reason = None
        job.stop_signalled = False
        job.checkpoint_requested_at = None


def note(session: Session, job: JobRow, kind: str, *, reason: str | None, message: str) -> None:
    """A non-transition event about a job (stop requested, launch details)."""
    session.add(
        EventRow(
            at=time.time(),
            job_id=job.id,
            tenant=job.tenant,
            kind=kind,
            reason=reason,
            message=message,
        )
    )


def active_allocations(session: Session, job_id: int) -> list[AllocationRow]:
    return list(
        session.scalars(
            select(AllocationRow)
            .where(AllocationRow.job_id == job_id, AllocationRow.released_at.is_(None))
            .order_by(AllocationRow.replica)
        )
    )


def release(session: Session, job: JobRow, *, now: float | None = None) -> None:
    """Free the job's GPUs and record the GPU-seconds it held, per UTC day."""
    at = time.time() if now is None else now
    held = active_allocations(session, job.id)
    meter_stop(session, job, held, at)  # the last credit interval, a preemption's refund
    for alloc in held:
        alloc.released_at = at
        gpus = len(alloc.gpu_indices.split(",")) if alloc.gpu_indices else 0
        share = gpus * alloc.gpu_milli / GPU_MILLI
        if share <= 0:
            continue
        for day, seconds in split_by_day(alloc.allocated_at, at):
            add_usage(session, alloc.tenant, alloc.gpu_type, day, share * seconds)
        job.attained_gpu_s += share * max(0.0, at - alloc.allocated_at)


def split_by_day(start: float, end: float) -> list[tuple[str, float]]:
    """Seconds of [start, end) in each UTC day."""
    out: list[tuple[str, float]] = []
    t = start
    while t < end:
        day = datetime.fromtimestamp(t, UTC).date()
        next_midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400
        stop = min(end, next_midnight)
        out.append((day.isoformat(), stop - t))
        t = stop
    return out


def add_usage(session: Session, tenant: str, gpu_type: str, day: str, gpu_s: float) -> None:
    row = session.scalar(
        select(UsageRow).where(
            UsageRow.tenant == tenant, UsageRow.gpu_type == gpu_type, UsageRow.day == day
        )
    )
    if row is None:
        session.add(UsageRow(tenant=tenant, gpu_type=gpu_type, day=day, gpu_seconds=gpu_s))
        session.flush()
    else:
        row.gpu_seconds += gpu_s


def _stop_cause(session: Session, job: JobRow) -> str:
    """Why the job was asked to stop, from its latest stop request: ``preempted for job
    2``, or what the request said (``node vm is drained``)."""
    request = session.scalars(
        select(EventRow)
        .where(EventRow.job_id == job.id, EventRow.kind == "stop-requested")
        .order_by(EventRow.id.desc())
        .limit(1)
    ).first()
    if request is None:
        return "preempted"
    if job.stop_reason == StopReason.PREEMPT:
        _, found, beneficiary = (request.message or "").partition(" for job ")
        return f"preempted for job {beneficiary}" if found else "preempted"
    return request.message or "preempted"


def stop_outcome(cause: str, exit_code: int | None, message: str) -> str:
    """How a requeued job's processes ended after their SIGTERM, in words: a clean exit
    (it saved its state, say) reads differently from a process killed after the grace."""
    if exit_code == 0:
        return f"{cause}; stopped cleanly (exit 0) after SIGTERM"
    if exit_code is not None and not message:
        return f"{cause}; exit code {exit_code} after SIGTERM"
    return f"{cause}; {message}" if message else cause


def finish(
    session: Session,
    job: JobRow,
    *,
    exit_code: int | None,
    message: str = "",
    now: float | None = None,
) -> None:
    """Processes of a starting/running job are gone; decide what that means."""
    at = time.time() if now is None else now
    release(session, job, now=at)
    job.exit_code = exit_code
    stop = job.stop_reason
    if stop is not None and stop.requeues:
        job.message = stop_outcome(_stop_cause(session, job), exit_code, message)
        transition(session, job, JobState.PREEMPTED, reason=stop, message=job.message, now=at)
        transition(session, job, JobState.PENDING, reason="requeued", message="requeued", now=at)
    elif stop == StopReason.CANCEL:
        job.message = "cancelled"
        transition(session, job, JobState.CANCELLED, reason="cancel", message=message, now=at)
    elif stop == StopReason.MAX_RUNTIME:
        job.message = "stopped after exceeding max_runtime"
        transition(session, job, JobState.FAILED, reason="max-runtime", message=job.message, now=at)
    elif exit_code == 0:
        job.message = message
        transition(session, job, JobState.SUCCEEDED, reason="exit", message="exit code 0", now=at)
    else:
        job.message = message or f"exit code {exit_code}"
        transition(session, job, JobState.FAILED, reason="exit", message=job.message, now=at)
