"""The pending queue with each job's position, typed reason and estimated start."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mosu.core.api import JobState, QueueEntry
from mosu.core.errors import NotFound
from mosu.service.db.convert import gpus_of, ts
from mosu.service.db.rows import JobRow
from mosu.service.services.auth import Principal

_ENTRY_COLUMNS = (
    JobRow.id,
    JobRow.name,
    JobRow.tenant,
    JobRow.gpus,
    JobRow.gpu_milli,
    JobRow.replicas,
    JobRow.priority,
    JobRow.submitted_at,
    JobRow.pending_reason,
    JobRow.pending_message,
    JobRow.estimated_start,
    JobRow.estimated_start_late,
)


def queue(session: Session, *, principal: Principal, positions: dict[int, int]) -> list[QueueEntry]:
    """Positions are cluster-wide (from the last cycle); a tenant sees only its own entries.
    Jobs submitted after the last cycle have no position yet and come last."""
    return queue_page(session, principal=principal, positions=positions)[1]


def queue_page(
    session: Session,
    *,
    principal: Principal,
    positions: dict[int, int],
    tenant: str | None = None,
    kind: str | None = None,
    gpu_type: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[int, list[QueueEntry]]:
    """How many pending jobs match, and ``limit`` of them from ``offset`` in queue order.

    ``gpu_type`` matches jobs that may run on that type (naming it, or any type)."""
    # Ids only, ordered by the last cycle's positions, and whole entries only for the
    # page shown: a queue of ten thousand jobs is ordered in milliseconds.
    query = select(JobRow.id, JobRow.submitted_at).where(JobRow.state == JobState.PENDING.value)
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    if tenant is not None:
        query = query.where(JobRow.tenant == tenant)
    if kind is not None:
        query = query.where(JobRow.kind == kind)
    if gpu_type is not None:
        like = _escape_like(gpu_type)
        query = query.where(
            or_(
                JobRow.gpu_types.in_(("", gpu_type)),
                JobRow.gpu_types.like(f"{like},%", escape="\\"),
                JobRow.gpu_types.like(f"%,{like}", escape="\\"),
                JobRow.gpu_types.like(f"%,{like},%", escape="\\"),
            )
        )
    submitted = {job_id: at for job_id, at in session.execute(query)}
    keys = [i for i in sorted(positions, key=positions.__getitem__) if i in submitted]
    # Jobs submitted after the last cycle have no position yet: last, oldest first.
    unplaced = [(at, i) for i, at in submitted.items() if i not in positions]
    keys += [job_id for _, job_id in sorted(unplaced)]
    ids = keys[offset : None if limit is None else offset + limit]
    rows = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for r in session.execute(select(*_ENTRY_COLUMNS).where(JobRow.id.in_(chunk))):
            rows[r.id] = r
    entries = [_entry(rows[i], positions.get(i)) for i in ids if i in rows]
    return len(keys), entries


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _entry(r, position: int | None) -> QueueEntry:  # type: ignore[no-untyped-def]
    return QueueEntry(
        position=position,
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
        estimated_start_late=ts(r.estimated_start_late),
    )
