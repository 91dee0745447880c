"""Read-only history and cluster views for the dashboard, from what the store keeps.

Allocation rows carry ``allocated_at`` and ``released_at``, so GPUs held over any past
window are exact sums of overlaps; state events are the job lifecycle, so queue depth
and pending demand over time are running sums of pending transitions. Nothing here is
sampled or written: the history is as durable and as exact as the rows it is read from.

Visibility follows the API's rules, through the same helpers: a tenant sees its own
jobs and tenant-level series, and the rest of the cluster only summed up under
``OTHERS``; node-level views are the operator's (``Principal.require_operator``).
Times are UTC epoch seconds; GPU amounts are GPUs (fractions summed) unless a name ends
in ``_milli``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.models import GPU_MILLI
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services.auth import Principal
from mosu.service.services.events import visible
from mosu.service.services.jobs import get_row

OTHERS = "other tenants"
"""The one label under which a tenant sees every other tenant's share, summed."""
PREEMPTION_STATES = ("preempted",)
ALERT_STATES = ("failed",)
ALERT_KINDS = ("node-down", "node-draining")
"""Event kinds shown as alerts on the overview (with failed jobs). A subsystem that
records a new kind of alert as an event adds its kind here."""


# ---------------------------------------------------------------- series


@dataclass(frozen=True, slots=True)
class Window:
    """``buckets`` equal steps from ``start`` to ``end``."""

    start: float
    end: float
    buckets: int

    @property
    def step(self) -> float:
        return (self.end - self.start) / self.buckets

    def edges(self) -> np.ndarray:
        return np.linspace(self.start, self.end, self.buckets + 1)


@dataclass(frozen=True, slots=True)
class Series:
    """Values per bucket of a ``Window``, one list per label."""

    window: Window
    values: dict[str, list[float]]


def _scope(principal: Principal, tenant: str) -> str:
    return tenant if principal.is_operator or tenant == principal.tenant else OTHERS


def _share(gpu_indices: str, gpu_milli: int) -> float:
    devices = len(gpu_indices.split(",")) if gpu_indices else 0
    return devices * gpu_milli / GPU_MILLI


def _overlapping_allocations(session: Session, start: float, end: float):  # type: ignore[no-untyped-def]
    return session.execute(
        select(
            AllocationRow.tenant,
            AllocationRow.gpu_type,
            AllocationRow.gpu_indices,
            AllocationRow.gpu_milli,
            AllocationRow.allocated_at,
            AllocationRow.released_at,
        ).where(
            AllocationRow.allocated_at < end,
            or_(AllocationRow.released_at.is_(None), AllocationRow.released_at > start),
        )
    ).all()


def allocation_series(
    session: Session, *, principal: Principal, window: Window, now: float
) -> Series:
    """Average GPUs held in each bucket, per tenant (a tenant sees itself and ``OTHERS``).

    Exact: each allocation adds its share times its overlap with the bucket. Open
    allocations count up to ``now``."""
    rows = _overlapping_allocations(session, window.start, window.end)
    labels = sorted({_scope(principal, r.tenant) for r in rows})
    if not rows:
        return Series(window, {})
    index = {label: i for i, label in enumerate(labels)}
    who = np.fromiter((index[_scope(principal, r.tenant)] for r in rows), np.int64, len(rows))
    share = np.fromiter((_share(r.gpu_indices, r.gpu_milli) for r in rows), float, len(rows))
    begin = np.fromiter((r.allocated_at for r in rows), float, len(rows))
    end = np.fromiter(
        (now if r.released_at is None else r.released_at for r in rows), float, len(rows)
    )
    held = np.maximum(end - begin, 0.0)
    # Share-seconds held up to each edge, per row; their differences are the buckets'.
    edges = window.edges()
    upto = np.clip(edges[None, :] - begin[:, None], 0.0, held[:, None]) * share[:, None]
    per_row = np.diff(upto, axis=1) / window.step
    totals = np.zeros((len(labels), window.buckets))
    np.add.at(totals, who, per_row)
    return Series(window, {label: _rounded(totals[i]) for label, i in index.items()})


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


@dataclass(frozen=True, slots=True)
class PendingSteps:
    """Pending transitions in a window: (time, job, +1 entering / -1 leaving pending),
    with each job's tenant and GPU demand; plus the jobs pending now."""

    steps: list[tuple[float, int, int]]
    jobs: dict[int, tuple[str, int, str]]
    """Job id → (tenant, total GPU milli, GPU type it asks for or "")."""
    pending_now: list[int]


def pending_steps(session: Session, *, principal: Principal, start: float) -> PendingSteps:
    """Every pending transition since ``start`` that ``principal`` may see."""
    pending = JobState.PENDING.value
    query = select(EventRow.at, EventRow.job_id, EventRow.from_state, EventRow.to_state).where(
        EventRow.at >= start,
        EventRow.kind == "state",
        or_(EventRow.to_state == pending, EventRow.from_state == pending),
    )
    events = session.execute(visible(query, principal, None).order_by(EventRow.id)).all()
    steps = [
        (e.at, e.job_id, (e.to_state == pending) - (e.from_state == pending))
        for e in events
        if e.job_id is not None
    ]
    now_query = select(JobRow.id).where(JobRow.state == pending)
    if not principal.is_operator:
        now_query = now_query.where(JobRow.tenant == principal.tenant)
    pending_now = list(session.scalars(now_query))
    ids = sorted({s[1] for s in steps} | set(pending_now))
    jobs: dict[int, tuple[str, int, str]] = {}
    for chunk in _chunks(ids, 5000):
        for r in session.execute(
            select(
                JobRow.id,
                JobRow.tenant,
                JobRow.replicas,
                JobRow.gpus,
                JobRow.gpu_milli,
                JobRow.gpu_types,
            ).where(JobRow.id.in_(chunk))
        ):
            jobs[r.id] = (r.tenant, r.replicas * r.gpus * r.gpu_milli, r.gpu_types.split(",")[0])
    return PendingSteps(steps, jobs, pending_now)


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def queue_depth_series(
    steps: PendingSteps, *, principal: Principal, window: Window
) -> dict[str, list[float]]:
    """Jobs pending at each bucket's end (a tenant: its own only), walked back from the
    count pending now through the transitions since."""
    edges = window.edges()[1:]
    depth = np.full(window.buckets, float(len(steps.pending_now)))
    if steps.steps:
        at = np.fromiter((s[0] for s in steps.steps), float, len(steps.steps))
        delta = np.fromiter((s[2] for s in steps.steps), float, len(steps.steps))
        order = np.argsort(at, kind="stable")
        at, delta = at[order], delta[order]
        after = np.cumsum(delta[::-1])[::-1]  # sum of deltas from each event to the end
        first_after = np.searchsorted(at, edges, side="right")
        later = np.where(first_after < len(at), after[np.minimum(first_after, len(at) - 1)], 0)
        depth -= later
    label = "pending" if principal.is_operator else f"pending ({principal.tenant})"
    return {label: [max(0.0, float(v)) for v in depth]}


# ---------------------------------------------------------------- quota attainment inputs


@dataclass
class TenantSteps:
    """Changes of what each tenant holds and wants, per (tenant, GPU type), in time
    order: ``(time, tenant, gpu_type, allocated_milli, demand_milli)`` after each change.
    Demand is what it holds plus what it waits for (the simulator's definition)."""

    samples: list[tuple[float, str, str, int, int]] = field(default_factory=list)
    guarantees: dict[tuple[str, str], int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    capacity_milli: int = 0


def tenant_steps(
    session: Session,
    *,
    principal: Principal,
    start: float,
    now: float,
    pending: PendingSteps,
) -> TenantSteps:
    """The operator's input to quota attainment over [start, now] for every tenant."""
    principal.require_operator("see every tenant's history")
    quota_rows = list(session.scalars(select(QuotaRow)))
    guarantees = {(q.tenant, q.gpu_type): q.guaranteed_milli for q in quota_rows}
    only_type: dict[str, str | None] = {}
    for q in quota_rows:
        only_type[q.tenant] = q.gpu_type if q.tenant not in only_type else None
    deltas: list[tuple[float, str, str, int, int]] = []  # time, tenant, type, d_alloc, d_demand
    for r in _overlapping_allocations(session, start, now):
        milli = round(_share(r.gpu_indices, r.gpu_milli) * GPU_MILLI)
        deltas.append((max(r.allocated_at, start), r.tenant, r.gpu_type, milli, milli))
        if r.released_at is not None and r.released_at <= now:
            deltas.append((r.released_at, r.tenant, r.gpu_type, -milli, -milli))
    # Waiting demand: jobs pending at ``start`` (walked back from now), then transitions.
    pending_at_start = set(pending.pending_now)
    for _, job_id, delta in sorted(pending.steps, reverse=True):
        if delta > 0:
            pending_at_start.discard(job_id)
        elif delta < 0:
            pending_at_start.add(job_id)

    def demand_key(job_id: int) -> tuple[str, str, int]:
        tenant, milli, gpu_type = pending.jobs[job_id]
        return tenant, gpu_type or only_type.get(tenant) or "*", milli

    for job_id in sorted(pending_at_start):
        if job_id in pending.jobs:
            tenant, gpu_type, milli = demand_key(job_id)
            deltas.append((start, tenant, gpu_type, 0, milli))
    for at, job_id, delta in pending.steps:
        if job_id in pending.jobs and delta:
            tenant, gpu_type, milli = demand_key(job_id)
            deltas.append((at, tenant, gpu_type, 0, delta * milli))
    deltas.sort(key=lambda d: d[0])
    held: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    samples = []
    for at, tenant, gpu_type, d_alloc, d_demand in deltas:
        value = held[(tenant, gpu_type)]
        value[0] += d_alloc
        value[1] += d_demand
        samples.append((at, tenant, gpu_type, value[0], max(value[1], value[0])))
    capacity = session.scalar(
        select(func.coalesce(func.sum(NodeRow.gpus), 0)).where(NodeRow.state != "down")
    )
    weights = {
        name: weight for name, weight in session.execute(select(TenantRow.name, TenantRow.weight))
    }
    return TenantSteps(samples, guarantees, weights, int(capacity or 0) * GPU_MILLI)


# ---------------------------------------------------------------- the cluster now


@dataclass(frozen=True, slots=True)
class GpuTypeState:
    """GPUs of one type right now: held within guarantees, borrowed (held above a
    tenant's guarantee), free on nodes that take work, and on nodes down or draining."""

    gpu_type: str
    total: int
    within_guarantee: float
    borrowed: float
    free: float
    unavailable: int
    """On nodes that are down or draining (what they still run counts as held)."""


def _held_now(session: Session) -> dict[tuple[str, str], float]:
    held: dict[tuple[str, str], float] = defaultdict(float)
    for tenant, gpu_type, indices, milli in session.execute(
        select(
            AllocationRow.tenant,
            AllocationRow.gpu_type,
            AllocationRow.gpu_indices,
            AllocationRow.gpu_milli,
        ).where(AllocationRow.released_at.is_(None))
    ):
        held[(tenant, gpu_type)] += _share(indices, milli)
    return held


def gpu_states(session: Session) -> list[GpuTypeState]:
    """The cluster in aggregate (no tenant named), for every principal."""
    held = _held_now(session)
    guaranteed = {
        (q.tenant, q.gpu_type): q.guaranteed_milli / GPU_MILLI
        for q in session.scalars(select(QuotaRow))
    }
    within: dict[str, float] = defaultdict(float)
    borrowed: dict[str, float] = defaultdict(float)
    for (tenant, gpu_type), amount in held.items():
        own = min(amount, guaranteed.get((tenant, gpu_type), 0.0))
        within[gpu_type] += own
        borrowed[gpu_type] += amount - own
    total: dict[str, int] = defaultdict(int)
    unavailable: dict[str, int] = defaultdict(int)
    held_unavailable: dict[str, float] = defaultdict(float)
    down_nodes = set()
    for name, gpu_type, gpus, state in session.execute(
        select(NodeRow.name, NodeRow.gpu_type, NodeRow.gpus, NodeRow.state)
    ):
        total[gpu_type] += gpus
        if state != "ready":
            unavailable[gpu_type] += gpus
            down_nodes.add(name)
    if down_nodes:
        for node, gpu_type, indices, milli in session.execute(
            select(
                AllocationRow.node,
                AllocationRow.gpu_type,
                AllocationRow.gpu_indices,
                AllocationRow.gpu_milli,
            ).where(AllocationRow.released_at.is_(None))
        ):
            if node in down_nodes:
                held_unavailable[gpu_type] += _share(indices, milli)
    out = []
    for gpu_type in sorted(total):
        used = within[gpu_type] + borrowed[gpu_type]
        off = max(0.0, unavailable[gpu_type] - held_unavailable[gpu_type])
        out.append(
            GpuTypeState(
                gpu_type=gpu_type,
                total=total[gpu_type],
                within_guarantee=round(within[gpu_type], 3),
                borrowed=round(borrowed[gpu_type], 3),
                free=round(max(0.0, total[gpu_type] - used - off), 3),
                unavailable=unavailable[gpu_type],
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class TenantDemand:
    """A tenant's waiting work right now."""

    pending_jobs: int = 0
    pending_gpus: float = 0.0
    waiting_for_guarantee: int = 0
    """Pending jobs the last cycle found within the tenant's guarantee (starved if > 0)."""


def pending_demand(session: Session, *, principal: Principal) -> dict[str, TenantDemand]:
    """Pending jobs and GPUs per tenant (a tenant: its own only)."""
    query = (
        select(
            JobRow.tenant,
            JobRow.pending_reason,
            func.count(),
            func.sum(JobRow.replicas * JobRow.gpus * JobRow.gpu_milli),
        )
        .where(JobRow.state == JobState.PENDING.value)
        .group_by(JobRow.tenant, JobRow.pending_reason)
    )
    if not principal.is_operator:
        query = query.where(JobRow.tenant == principal.tenant)
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for tenant, reason, count, milli in session.execute(query):
        entry = acc[tenant]
        entry[0] += count
        entry[1] += (milli or 0) / GPU_MILLI
        if reason == "waiting-for-guarantee":
            entry[2] += count
    return {t: TenantDemand(int(v[0]), round(v[1], 3), int(v[2])) for t, v in sorted(acc.items())}


@dataclass(frozen=True, slots=True)
class GpuHolder:
    """Who holds (a share of) one GPU."""

    tenant: str
    job_id: int
    milli: int


@dataclass(frozen=True, slots=True)
class NodeMap:
    name: str
    gpu_type: str
    gpus: int
    state: str
    rack: str
    holders: list[list[GpuHolder]]
    """Per GPU index, every job holding a share of it (several for fractional jobs)."""


def gpu_map(session: Session, *, principal: Principal) -> list[NodeMap]:
    """Every GPU of every node and who holds it: the operator's view."""
    principal.require_operator("see which tenant holds each GPU")
    nodes = {
        r.name: NodeMap(r.name, r.gpu_type, r.gpus, r.state, r.rack, [[] for _ in range(r.gpus)])
        for r in session.execute(
            select(NodeRow.name, NodeRow.gpu_type, NodeRow.gpus, NodeRow.state, NodeRow.rack)
        )
    }
    for node, tenant, job_id, indices, milli in session.execute(
        select(
            AllocationRow.node,
            AllocationRow.tenant,
            AllocationRow.job_id,
            AllocationRow.gpu_indices,
            AllocationRow.gpu_milli,
        )
        .where(AllocationRow.released_at.is_(None))
        .order_by(AllocationRow.id)
    ):
        entry = nodes.get(node)
        if entry is None:
            continue
        for index in indices.split(","):
            if index and int(index) < entry.gpus:
                entry.holders[int(index)].append(GpuHolder(tenant, job_id, milli))
    return sorted(nodes.values(), key=lambda n: (n.rack, n.name))


# ---------------------------------------------------------------- events and jobs


def recent_events(
    session: Session,
    *,
    principal: Principal,
    to_states: Sequence[str] = (),
    kinds: Sequence[str] = (),
    limit: int = 20,
) -> list[EventRow]:
    """The newest events that are a state change into ``to_states`` or of ``kinds``,
    newest first, as ``principal`` may see them."""
    wanted = []
    if to_states:
        wanted.append(and_(EventRow.kind == "state", EventRow.to_state.in_(to_states)))
    if kinds:
        wanted.append(EventRow.kind.in_(kinds))
    if not wanted:
        return []
    query = select(EventRow).where(or_(*wanted))
    query = visible(query, principal, None).order_by(EventRow.id.desc()).limit(limit)
    return list(session.scalars(query))


def job_allocations(session: Session, *, principal: Principal, job_id: int) -> list[AllocationRow]:
    """Every allocation a job ever had (each attempt's replicas), oldest first; another
    tenant's job is not found, as in the API."""
    get_row(session, principal=principal, job_id=job_id)
    return list(
        session.scalars(
            select(AllocationRow)
            .where(AllocationRow.job_id == job_id)
            .order_by(AllocationRow.attempt, AllocationRow.replica)
        )
    )
