"""What a tenant out of credits gets, applied around each scheduling cycle.

Only tenants with at least one grant are limited (the others are charged, never held).
Before a cycle, ``gate`` rewrites the snapshot the engine sees:

- ``hold`` and ``stop``: a pending job starts only if its estimated cost fits what is
  left after the reservations of the tenant's running jobs; the others wait with the
  reason ``credits-exhausted``.
- ``best-effort``: once the balance (less reservations) is gone, the tenant's guarantees
  are zero in the snapshot, so it runs only on idle capacity, as a borrower, and is
  reclaimed first.

After each metering, ``stop`` asks the running jobs of an exhausted tenant to stop (the
usual SIGTERM and grace); they are requeued and wait for credits.

The reservation of a job is its cost per hour (its GPUs at the rate of its GPU type,
CPU and memory) times its expected run: the user's estimate, else the history median
the profile uses, else its ``max_runtime``, else one metering interval. All of this runs
on the scheduler's one thread, so concurrent submissions cannot both spend the same
credits: a tenant overspends at most what its running jobs use beyond their reservations
before the next metering notices (see docs/credits.md).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.credits import CreditPolicy, RateCard, ReplicaUse, admit, to_ms
from mosu.core.models import Job, Quota, Tenant
from mosu.core.reasons import PendingReason, StopReason
from mosu.engine.snapshot import ClusterSnapshot
from mosu.service.db.convert import platform_id
from mosu.service.db.credit_rows import CreditGrantRow, CreditIntervalRow
from mosu.service.db.rows import JobRow
from mosu.service.services.credits import balances_micro, policies
from mosu.service.services.credits_alerts import CreditAlert, check_thresholds
from mosu.service.services.credits_meter import load_card, meter_running
from mosu.service.services.lifecycle import note
from mosu.service.services.scheduling import LoadedSnapshot

DEFAULT_RESERVE_S = 60.0
"""Expected run of a job with no estimate, history or ``max_runtime``: one metering
interval (the bound on what such a job can spend unnoticed)."""
EXHAUSTED_MESSAGE = "the tenant's credits are used up (or reserved by its running jobs)"


@dataclass
class Gate:
    held: list[tuple[int, tuple[PendingReason, str, float | None, float | None]]] = field(
        default_factory=list
    )
    """Pending job id → (reason, message, estimated start) to store."""
    suspended: list[str] = field(default_factory=list)
    """Best-effort tenants whose guarantees the snapshot zeroed."""
    available: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)


def limited_tenants(session: Session) -> list[str]:
    return list(session.scalars(select(CreditGrantRow.tenant).distinct()))


def _hourly(card: RateCard, job: Job, gpu_type: str | None, t_ms: int) -> int:
    """A job's cost per hour; with no GPU type known, the dearest one it may use."""
    types = [gpu_type] if gpu_type else list(job.gpu_types)
    if not types:
        types = sorted({r.resource for r in card.lines()}) or ["*"]
    best = 0
    for t in types:
        use = ReplicaUse(
            gpu_type=t,
            gpu_milli=job.shape.gpus * job.shape.gpu_milli,
            cpu_milli=job.shape.cpu_milli,
            mem_mib=job.shape.mem_mib,
        )
        best = max(best, card.hourly_micro(use, t_ms) * job.replicas)
    return best


def expected_run_s(snapshot: ClusterSnapshot, job: Job, max_runtime_s: float | None) -> float:
    known = snapshot.estimate_of(job)
    if known is not None:
        return known
    if max_runtime_s is not None:
        return max_runtime_s
    return DEFAULT_RESERVE_S


def reservations(
    session: Session, card: RateCard, loaded: LoadedSnapshot, tenants: set[str], now: float
) -> dict[str, int]:
    """Estimated cost still to come of each tenant's running jobs: the larger of its
    expected and its elapsed run, less what is metered of this attempt already."""
    snapshot = loaded.snapshot
    running = [r for r in snapshot.running if r.job.tenant in tenants]
    if not running:
        return {}
    ids = [platform_id(r.job.id) for r in running]
    limits = dict(
        session.execute(select(JobRow.id, JobRow.max_runtime_s).where(JobRow.id.in_(ids))).all()
    )
    metered: dict[tuple[int, int], int] = defaultdict(int)
    for job_id, run_start, amount in session.execute(
        select(
            CreditIntervalRow.job_id,
            CreditIntervalRow.run_start_ms,
            func.sum(CreditIntervalRow.amount_micro),
        )
        .where(CreditIntervalRow.job_id.in_(ids))
        .group_by(CreditIntervalRow.job_id, CreditIntervalRow.run_start_ms)
    ):
        metered[(job_id, run_start)] += int(amount)
    nodes = {n.name: n for n in snapshot.nodes}
    out: dict[str, int] = defaultdict(int)
    t_ms = to_ms(now)
    for r in running:
        gpu_type = nodes[r.placement[0].node].gpu_type if r.placement else None
        hourly = _hourly(card, r.job, gpu_type, t_ms)
        run_s = max(
            expected_run_s(snapshot, r.job, limits.get(platform_id(r.job.id))), now - r.started_s
        )
        spent = metered.get((platform_id(r.job.id), to_ms(r.started_s)), 0)
        out[r.job.tenant] += max(0, round(hourly * run_s / 3600) - spent)
    return dict(out)


def gate(session: Session, loaded: LoadedSnapshot, now: float) -> tuple[LoadedSnapshot, Gate]:
    """The snapshot the engine should see, and the jobs held for credits."""
    result = Gate()
    tenants = set(limited_tenants(session))
    if not tenants:
        return loaded, result
    card = load_card(session)
    snapshot = loaded.snapshot
    chosen = policies(session)
    balance = balances_micro(session, sorted(tenants))
    reserved = reservations(session, card, loaded, tenants, now)
    result.reserved = reserved
    pending = list(snapshot.pending)
    held_ids: set[str] = set()
    pending_ids = [platform_id(j.id) for j in pending if j.tenant in tenants]
    limits = dict(
        session.execute(
            select(JobRow.id, JobRow.max_runtime_s).where(JobRow.id.in_(pending_ids))
        ).all()
    )
    t_ms = to_ms(now)
    tenants_out: list[Tenant] = []
    for t in snapshot.tenants:
        policy = chosen.get(t.name, CreditPolicy.HOLD)
        if t.name not in tenants:
            tenants_out.append(t)
            continue
        available = balance.get(t.name, 0) - reserved.get(t.name, 0)
        result.available[t.name] = available
        if policy == CreditPolicy.BEST_EFFORT:
            if available <= 0:
                result.suspended.append(t.name)
                t = dataclasses.replace(
                    t,
                    quotas=tuple((k, Quota(0, q.limit_milli)) for k, q in t.quotas),
                )
            tenants_out.append(t)
            continue
        tenants_out.append(t)
        queue = [
            (
                j.id,
                round(
                    _hourly(card, j, None, t_ms)
                    * expected_run_s(snapshot, j, limits.get(platform_id(j.id)))
                    / 3600
                ),
            )
            for j in pending
            if j.tenant == t.name
        ]
        _admitted, held, _left = admit(available, queue)
        held_ids.update(held)
    for job_id in sorted(held_ids, key=int):
        result.held.append(
            (platform_id(job_id), (PendingReason.CREDITS_EXHAUSTED, EXHAUSTED_MESSAGE, None, None))
        )
    new_snapshot = dataclasses.replace(
        snapshot,
        tenants=tuple(tenants_out),
        pending=tuple(j for j in pending if j.id not in held_ids),
    )
    return dataclasses.replace(loaded, snapshot=new_snapshot), result


def stop_exhausted(session: Session) -> list[int]:
    """Ask the running jobs of exhausted ``stop`` tenants to stop (requeued on exit)."""
    stopping = [t for t, p in policies(session).items() if p == CreditPolicy.STOP]
    if not stopping:
        return []
    limited = set(limited_tenants(session))
    balance = balances_micro(session, stopping)
    out = []
    for tenant in stopping:
        if tenant not in limited or balance.get(tenant, 0) > 0:
            continue
        rows = session.scalars(
            select(JobRow).where(
                JobRow.tenant == tenant,
                JobRow.state.in_(["starting", "running"]),
                JobRow.stop_reason.is_(None),
            )
        )
        for row in rows:
            row.stop_reason = StopReason.CREDITS_EXHAUSTED
            row.stop_signalled = False
            note(
                session,
                row,
                "stop-requested",
                reason=StopReason.CREDITS_EXHAUSTED,
                message="the tenant's credits are used up",
            )
            out.append(row.id)
    return out


@dataclass
class Metered:
    stopping: list[int]
    alerts: list[CreditAlert]


def housekeeping(session: Session, *, now: float) -> Metered:
    """One metering: charge running replicas, expire grants, record threshold alerts,
    stop what must stop."""
    meter_running(session, now=now)
    alerts = check_thresholds(session, limited_tenants(session), now=now)
    return Metered(stopping=stop_exhausted(session), alerts=alerts)
