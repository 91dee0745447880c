"""Metering: running replicas are charged interval by interval from their allocation
rows (the lifecycle's usage records), at least once a minute and at every stop; work a
preemption threw away is refunded as its own ledger line.

Exactly once: an interval is keyed by (allocation, start) under a unique constraint and
the next one starts where the last ended, so a meter that crashed before its commit is
redone from the same point, and a second server metering the same replica at once fails
its insert and retries from the new end. The charge of an interval is the difference of
the rounded cumulative costs (``mosu.core.credits``), so how a run is sliced never
changes what it costs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mosu.core.credits import GrantState, RateCard, ReplicaUse, draw, to_ms, undo_draws
from mosu.core.models import GPU_MILLI
from mosu.service.db.credit_rows import (
    CreditEntryRow,
    CreditGrantRow,
    CreditIntervalRow,
    CreditRateRow,
)
from mosu.service.db.rows import AllocationRow, JobRow, QuotaRow

REFUNDED_STOPS = ("preempt",)
"""Stops decided by the scheduler: the work they throw away is refunded."""


def load_card(session: Session) -> RateCard:
    from mosu.core.credits import Rate

    return RateCard(
        Rate(
            resource=r.resource,
            effective_ms=to_ms(r.effective_at),
            micro_per_hour=r.micro_per_hour,
            borrowed_micro_per_hour=r.borrowed_micro_per_hour,
        )
        for r in session.execute(
            select(
                CreditRateRow.resource,
                CreditRateRow.effective_at,
                CreditRateRow.micro_per_hour,
                CreditRateRow.borrowed_micro_per_hour,
            )
        )
    )


def grant_states(session: Session, tenants: Iterable[str]) -> dict[str, list[GrantState]]:
    """Every grant of these tenants with what is left of it (its entries' sum)."""
    names = sorted(set(tenants))
    if not names:
        return {}
    left = dict(
        session.execute(
            select(CreditEntryRow.grant_id, func.sum(CreditEntryRow.amount_micro))
            .where(CreditEntryRow.tenant.in_(names), CreditEntryRow.grant_id.is_not(None))
            .group_by(CreditEntryRow.grant_id)
        ).all()
    )
    out: dict[str, list[GrantState]] = defaultdict(list)
    for g in session.execute(
        select(
            CreditGrantRow.id,
            CreditGrantRow.tenant,
            CreditGrantRow.effective_at,
            CreditGrantRow.expires_at,
            CreditGrantRow.priority,
        ).where(CreditGrantRow.tenant.in_(names))
    ):
        out[g.tenant].append(
            GrantState(
                id=g.id,
                remaining_micro=int(left.get(g.id, 0)),
                effective_ms=to_ms(g.effective_at),
                expires_ms=None if g.expires_at is None else to_ms(g.expires_at),
                priority=g.priority,
            )
        )
    return out


def _share(indices: str, milli: int) -> int:
    return (len(indices.split(",")) if indices else 0) * milli


@dataclass(frozen=True)
class _Open:
    """An allocation being metered and where its charging stands."""

    id: int
    job_id: int
    tenant: str
    use: ReplicaUse
    run_start_ms: int
    metered_to_ms: int


def _borrowed(session: Session, allocations: Sequence[Any]) -> dict[int, bool]:
    """Whether each replica is above its tenant's guarantee for its GPU type: the tenant's
    replicas held at once fill the guarantee oldest first."""
    tenants = sorted({a.tenant for a in allocations})
    guarantee = {
        (q.tenant, q.gpu_type): q.guaranteed_milli
        for q in session.scalars(select(QuotaRow).where(QuotaRow.tenant.in_(tenants)))
    }
    held = session.execute(
        select(
            AllocationRow.id,
            AllocationRow.tenant,
            AllocationRow.gpu_type,
            AllocationRow.gpu_indices,
            AllocationRow.gpu_milli,
        )
        .where(AllocationRow.released_at.is_(None), AllocationRow.tenant.in_(tenants))
        .order_by(AllocationRow.allocated_at, AllocationRow.id)
    ).all()
    wanted = {a.id for a in allocations}
    used: dict[tuple[str, str], int] = defaultdict(int)
    out: dict[int, bool] = {}
    seen = set()
    for a in held:
        key = (a.tenant, a.gpu_type)
        used[key] += _share(a.gpu_indices, a.gpu_milli)
        seen.add(a.id)
        if a.id in wanted:
            out[a.id] = used[key] > guarantee.get(key, guarantee.get((a.tenant, "*"), 0))
    for a in allocations:  # already released in this transaction: judged alone
        if a.id not in seen:
            key = (a.tenant, a.gpu_type)
            out[a.id] = _share(a.gpu_indices, a.gpu_milli) > guarantee.get(key, 0)
    return out


RECENT_MS = 2 * 3_600_000
"""Where a running replica's last interval is looked for first: a range of the unique
index's (allocation, start), so a metering does not read a long run's whole history."""


def _metered_to(
    session: Session, ids: Sequence[int], since_ms: int | None
) -> dict[int, tuple[int, bool]]:
    done: dict[int, tuple[int, bool]] = {}
    for chunk in range(0, len(ids), 900):
        query = (
            select(
                CreditIntervalRow.allocation_id,
                func.max(CreditIntervalRow.end_ms),
                func.max(case((CreditIntervalRow.borrowed, 1), else_=0)),
            )
            .where(CreditIntervalRow.allocation_id.in_(ids[chunk : chunk + 900]))
            .group_by(CreditIntervalRow.allocation_id)
        )
        if since_ms is not None:
            query = query.where(CreditIntervalRow.start_ms >= since_ms)
        for alloc_id, end_ms, borrowed in session.execute(query):
            done[alloc_id] = (int(end_ms), bool(borrowed))
    return done


def _positions(
    session: Session, allocations: Sequence[Any], until_ms: int | None = None
) -> list[_Open]:
    ids = [a.id for a in allocations]
    done = _metered_to(session, ids, None if until_ms is None else until_ms - RECENT_MS)
    if until_ms is not None:
        older = [i for i in ids if i not in done]
        if older:  # new replicas (nothing to read) or a metering long missed
            done.update(_metered_to(session, older, None))
    fresh = [a for a in allocations if a.id not in done]
    borrowed = _borrowed(session, fresh) if fresh else {}
    out = []
    for a in allocations:
        run_start = to_ms(a.allocated_at)
        end, was_borrowed = done.get(a.id, (run_start, borrowed.get(a.id, False)))
        out.append(
            _Open(
                id=a.id,
                job_id=a.job_id,
                tenant=a.tenant,
                use=ReplicaUse(
                    gpu_type=a.gpu_type,
                    gpu_milli=_share(a.gpu_indices, a.gpu_milli),
                    cpu_milli=a.cpu_milli,
                    mem_mib=a.mem_mib,
                    borrowed=was_borrowed,
                ),
                run_start_ms=run_start,
                metered_to_ms=end,
            )
        )
    return out


def _insert_many(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Many rows at once: ``COPY`` on PostgreSQL with psycopg (an INSERT per row, even
    pipelined, costs several times the CPU), executemany elsewhere. A duplicate interval
    key is an ``IntegrityError`` either way."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        connection.execute(insert(table), rows)
        return
    import psycopg

    columns = list(rows[0])
    raw = connection.connection.driver_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row([row[c] for c in columns])
    except psycopg.errors.UniqueViolation as exc:
        raise IntegrityError(statement, None, exc) from None


def _charge(
    session: Session,
    card: RateCard,
    opened: Sequence[_Open],
    until_ms: int,
    *,
    final: bool,
    now: float,
) -> int:
    """Insert the intervals up to ``until_ms`` and their charges; returns how many."""
    todo = [o for o in opened if until_ms > o.metered_to_ms]
    if not todo:
        return 0
    rows = [
        {
            "allocation_id": o.id,
            "job_id": o.job_id,
            "tenant": o.tenant,
            "gpu_type": o.use.gpu_type,
            "borrowed": o.use.borrowed,
            "gpu_milli": o.use.gpu_milli,
            "cpu_milli": o.use.cpu_milli,
            "mem_mib": o.use.mem_mib,
            "run_start_ms": o.run_start_ms,
            "start_ms": o.metered_to_ms,
            "end_ms": until_ms,
            "amount_micro": card.interval_charge(o.use, o.run_start_ms, o.metered_to_ms, until_ms),
            "final": final,
        }
        for o in todo
    ]
    # Core statements, no RETURNING: the ORM's bulk path and fetching ids back cost more
    # than the database here. A charge names its interval by the interval's key.
    _insert_many(session, CreditIntervalRow.__table__, rows)
    grants = grant_states(session, {o.tenant for o in todo})
    left = {g.id: g.remaining_micro for gs in grants.values() for g in gs}
    entries = []
    for row in rows:
        amount = row["amount_micro"]
        if amount <= 0:
            continue
        tenant = row["tenant"]
        states = [
            GrantState(g.id, left[g.id], g.effective_ms, g.expires_ms, g.priority)
            for g in grants.get(tenant, [])
        ]
        for grant_id, part in draw(amount, states, until_ms - 1):
            if grant_id is not None:
                left[grant_id] -= part
            entries.append(
                {
                    "tenant": tenant,
                    "kind": "charge",
                    "amount_micro": -part,
                    "at": now,
                    "grant_id": grant_id,
                    "allocation_id": row["allocation_id"],
                    "interval_start_ms": row["start_ms"],
                    "job_id": row["job_id"],
                    "key": None,
                    "note": "",
                }
            )
    if entries:
        _insert_many(session, CreditEntryRow.__table__, entries)
    return len(rows)


def meter_running(session: Session, *, now: float | None = None) -> int:
    """Charge every running replica up to now; call in its own transaction and retry it
    on ``IntegrityError`` (another server metered some interval first)."""
    at = time.time() if now is None else now
    card = load_card(session)
    if card.empty:
        return 0  # nothing costs anything yet; later rates never apply to the past
    allocations = session.execute(
        select(
            AllocationRow.id,
            AllocationRow.job_id,
            AllocationRow.tenant,
            AllocationRow.gpu_type,
            AllocationRow.gpu_indices,
            AllocationRow.gpu_milli,
            AllocationRow.cpu_milli,
            AllocationRow.mem_mib,
            AllocationRow.allocated_at,
        ).where(AllocationRow.released_at.is_(None))
    ).all()
    if not allocations:
        expire_grants(session, now=at)
        return 0
    until = to_ms(at)
    opened = _positions(session, allocations, until)
    n = _charge(session, card, opened, until, final=False, now=at)
    expire_grants(session, now=at)
    return n


def meter_stop(
    session: Session, job: JobRow, allocations: Sequence[AllocationRow], at: float
) -> None:
    """At a stop (inside the lifecycle's transaction, before the allocations are marked
    released): the last interval of each replica, and a refund of the work a preemption
    threw away. A concurrent meter of the same interval makes the savepoint fail; it is
    then redone from the new end."""
    if not allocations:
        return
    card = load_card(session)
    if card.empty:
        return
    for _ in range(3):
        try:
            with session.begin_nested():
                opened = _positions(session, allocations)
                _charge(session, card, opened, to_ms(at), final=True, now=at)
                if job.stop_reason in REFUNDED_STOPS:
                    _refund(session, card, job, opened, at)
            return
        except IntegrityError:
            continue


def _lost_s(job: JobRow, at: float) -> float:
    """Work a preemption at ``at`` threw away: the engine's definition (time since the
    last checkpoint of this attempt)."""
    from mosu.core.models import RunningJob
    from mosu.engine.preemption import seconds_since_checkpoint
    from mosu.service.db.convert import engine_job

    started = job.started_at if job.started_at is not None else at
    last = job.last_checkpoint_at
    if last is not None and last < started:
        last = None  # an earlier attempt's
    run = RunningJob(job=engine_job(job), placement=(), started_s=started, last_checkpoint_s=last)
    return seconds_since_checkpoint(run, at)


def _refund(
    session: Session, card: RateCard, job: JobRow, opened: Sequence[_Open], at: float
) -> None:
    lost_ms = to_ms(_lost_s(job, at))
    end_ms = to_ms(at)
    for o in opened:
        start = max(o.run_start_ms, end_ms - lost_ms)
        amount = card.interval_charge(o.use, o.run_start_ms, start, end_ms)
        if amount <= 0:
            continue
        draws = [
            (grant_id, -amount_micro)
            for grant_id, amount_micro in session.execute(
                select(CreditEntryRow.grant_id, CreditEntryRow.amount_micro)
                .where(CreditEntryRow.allocation_id == o.id, CreditEntryRow.kind == "charge")
                .order_by(CreditEntryRow.id)
            )
        ]
        lost_gpu_h = (end_ms - start) / 3_600_000 * o.use.gpu_milli / GPU_MILLI
        refunds = undo_draws(amount, draws)
        expired = _expired_by(session, [g for g, _ in refunds if g is not None], at)
        for grant_id, part in refunds:
            session.add(
                CreditEntryRow(
                    tenant=o.tenant,
                    kind="refund",
                    allocation_id=o.id,
                    amount_micro=part,
                    at=at,
                    grant_id=grant_id,
                    job_id=job.id,
                    key=f"refund:{o.id}:{grant_id}",
                    note=f"preempted: {lost_gpu_h:.4f} GPU-hours since the last checkpoint",
                )
            )
            if grant_id in expired:
                # Back to a grant that has expired since the charge: had the work not been
                # charged, these credits would have expired with it, so they do now. Its
                # own expiry (at its expiry time) then leaves out what this returns.
                session.add(
                    CreditEntryRow(
                        tenant=o.tenant,
                        kind="expiry",
                        allocation_id=o.id,
                        amount_micro=-part,
                        at=at,
                        grant_id=grant_id,
                        job_id=job.id,
                        key=f"expiry:{grant_id}:refund:{o.id}",
                        note="refunded to a grant that had expired",
                    )
                )
    session.flush()


def _expired_by(session: Session, grant_ids: list[int], at: float) -> set[int]:
    if not grant_ids:
        return set()
    return set(
        session.scalars(
            select(CreditGrantRow.id).where(
                CreditGrantRow.id.in_(grant_ids),
                CreditGrantRow.expires_at.is_not(None),
                CreditGrantRow.expires_at <= at,
            )
        )
    )


def expire_grants(session: Session, *, now: float) -> int:
    """What is left of each grant past its expiry leaves the balance, once (keyed)."""
    expired = list(
        session.scalars(
            select(CreditGrantRow).where(
                CreditGrantRow.expires_at.is_not(None), CreditGrantRow.expires_at <= now
            )
        )
    )
    if not expired:
        return 0
    keys = {f"expiry:{g.id}" for g in expired}
    done = set(session.scalars(select(CreditEntryRow.key).where(CreditEntryRow.key.in_(keys))))
    todo = [g for g in expired if f"expiry:{g.id}" not in done]
    if not todo:
        return 0
    states = grant_states(session, {g.tenant for g in todo})
    left = {s.id: s.remaining_micro for ss in states.values() for s in ss}
    n = 0
    for g in todo:
        rest = left.get(g.id, 0)
        session.add(
            CreditEntryRow(
                tenant=g.tenant,
                kind="expiry",
                amount_micro=-max(rest, 0),
                at=g.expires_at,
                grant_id=g.id,
                key=f"expiry:{g.id}",
                note=g.note,
            )
        )
        n += 1
    session.flush()
    return n
