"""The pending queue with each job's position, typed reason and estimated start."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import JobState, QueueEntry
from mosu.service.db.convert import gpus_of, ts
from mosu.service.db.rows import JobRow
from mosu.service.services.auth import Principal


def queue(session: Session, *, principal: Principal, positions: dict[int, int]) -> list[QueueEntry]:
    """Positions are cluster-wide (from the last cycle); a tenant sees only its own entries.
    Jobs submitted after the last cycle have no position yet and come last."""
    query = select(JobRow).where(JobRow.state == JobState.PENDING.value)
    if not principal.is_operator:
        query = query.where(JobRow.tenant == principal.tenant)
    rows = list(session.scalars(query))
    rows.sort(key=lambda r: (positions.get(r.id, 1 << 62), r.submitted_at, r.id))
    return [
        QueueEntry(
            position=positions.get(r.id),
            job_id=r.id,
            name=r.name,
            tenant=r.tenant,
            gpus=gpus_of(r),
            replicas=r.replicas,
            priority=r.priority,
            submitted_at=ts(r.submitted_at),
            reason=r.pending_reason,
            message=r.pending_message,
            estimated_start=ts(r.estimated_start),
        )
        for r in rows
    ]
