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
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.models import GPU_MILLI
from mosu.core.reasons import PendingReason
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services.auth import Principal
from mosu.service.services.events import visible
from mosu.service.services.jobs import get_row

T = TypeVar("T")
OTHERS = "other tenants"
"""The one label under which a tenant sees every other tenant's share, summed."""
PREEMPTION_STATES = ("preempted",)
ALERT_STATES = ("failed",)
ALERT_KINDS = ("node-down", "node-draining", "credits-alert")
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


def windows_ending(now: float) -> dict[str, Window]:
    """The dashboard's two windows: the last day in 15-minute buckets and the last week
    in hours."""
    return {"24h": Window(now - 86400, now, 96), "7d": Window(now - 7 * 86400, now, 168)}


@dataclass(frozen=True)
class ClusterHistory:
    """Every tenant's history over the dashboard's windows, as read from the store.

    Holds every tenant's name: render only what ``view(principal)`` returns."""

    now: float
    windows: dict[str, Window]
    tenants: list[str]
    allocated: dict[str, np.ndarray]
    """Window name → tenants x buckets: average GPUs held in the bucket."""
    pending: dict[str, np.ndarray]
    """Window name → tenants x buckets: jobs pending at the bucket's end."""
    guarantees: dict[str, float]
    """Tenant → guaranteed GPUs, all types summed (today's quotas)."""
    steps: TenantSteps
    """Quota attainment's input over the longest window."""

    def view(self, principal: Principal) -> HistoryView:
        """What ``principal`` may see: the operator every tenant; a tenant itself and the
        rest of the cluster summed up under ``OTHERS``."""
        index = {t: i for i, t in enumerate(self.tenants)}

        def scoped(matrix: np.ndarray) -> dict[str, list[float]]:
            if principal.is_operator:
                return {t: _rounded(matrix[i]) for t, i in index.items()}
            own = index.get(principal.tenant or "")
            mine = matrix[own] if own is not None else np.zeros(matrix.shape[1])
            rest = matrix.sum(axis=0) - mine if len(matrix) else np.zeros(matrix.shape[1])
            return {principal.tenant or "": _rounded(mine), OTHERS: _rounded(rest)}

        guarantees = visible_tenants(principal, self.guarantees)
        return HistoryView(
            windows=self.windows,
            allocated={w: scoped(m) for w, m in self.allocated.items()},
            pending={w: scoped(m) for w, m in self.pending.items()},
            guarantees=guarantees,
            guarantee_total=round(sum(self.guarantees.values()), 3),
        )


def visible_tenants(principal: Principal, by_tenant: dict[str, T]) -> dict[str, T]:
    """The entries of a tenant-keyed mapping that ``principal`` may see."""
    if principal.is_operator:
        return dict(by_tenant)
    return {t: v for t, v in by_tenant.items() if t == principal.tenant}


@dataclass(frozen=True)
class HistoryView:
    """One principal's share of a ``ClusterHistory``: series per label and window."""

    windows: dict[str, Window]
    allocated: dict[str, dict[str, list[float]]]
    pending: dict[str, dict[str, list[float]]]
    guarantees: dict[str, float]
    guarantee_total: float
    """Every tenant's guarantee summed: the cluster in aggregate."""


def cluster_history(session: Session, *, now: float) -> ClusterHistory:
    """Read every tenant's allocations and pending transitions over the dashboard's
    windows (the longest one once) and sum them per bucket."""
    windows = windows_ending(now)
    longest = min(w.start for w in windows.values())
    allocations = _overlapping_allocations(session, longest, now)
    pending = pending_steps(session, start=longest)
    tenant_rows = list(session.execute(select(TenantRow.name, TenantRow.weight)))
    tenants = sorted({t.name for t in tenant_rows} | {a.tenant for a in allocations})
    index = {t: i for i, t in enumerate(tenants)}
    guarantees: dict[str, float] = defaultdict(float)
    for tenant, milli in session.execute(select(QuotaRow.tenant, QuotaRow.guaranteed_milli)):
        guarantees[tenant] += milli / GPU_MILLI
    return ClusterHistory(
        now=now,
        windows=windows,
        tenants=tenants,
        allocated={
            name: _allocated_matrix(allocations, index, w, now) for name, w in windows.items()
        },
        pending={name: _pending_matrix(pending, index, w) for name, w in windows.items()},
        guarantees=dict(guarantees),
        steps=tenant_steps(
            session, allocations=allocations, start=longest, now=now, pending=pending
        ),
    )


def _share(gpu_indices: str, gpu_milli: int) -> float:
    devices = len(gpu_indices.split(",")) if gpu_indices else 0
    return devices * gpu_milli / GPU_MILLI


def _overlapping_allocations(session: Session, start: float, end: float) -> list[Any]:
    return list(
        session.execute(
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
        )
    )


def _allocated_matrix(
    rows: Sequence[Any], index: dict[str, int], window: Window, now: float
) -> np.ndarray:
    """Exact averages: each allocation adds its share times its overlap with a bucket
    (open ones up to ``now``)."""
    totals = np.zeros((len(index), window.buckets))
    if not rows:
        return totals
    n = len(rows)
    who = np.fromiter((index[r.tenant] for r in rows), np.int64, n)
    share = np.fromiter((_share(r.gpu_indices, r.gpu_milli) for r in rows), float, n)
    begin = np.fromiter((r.allocated_at for r in rows), float, n)
    end = np.fromiter((now if r.released_at is None else r.released_at for r in rows), float, n)
    held = np.maximum(end - begin, 0.0)
    # Share-seconds held up to each edge, per row; their differences are the buckets'.
    upto = np.clip(window.edges()[None, :] - begin[:, None], 0.0, held[:, None]) * share[:, None]
    np.add.at(totals, who, np.diff(upto, axis=1) / window.step)
    return totals


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


@dataclass(frozen=True, slots=True)
class PendingSteps:
    """Pending transitions since a time: (time, job, +1 entering / -1 leaving pending),
    with each job's tenant and GPU demand; plus the jobs pending now."""

    steps: list[tuple[float, int, int]]
    jobs: dict[int, tuple[str, int, str]]
    """Job id → (tenant, total GPU milli, first GPU type it names or "")."""
    pending_now: list[int]


def pending_steps(session: Session, *, start: float) -> PendingSteps:
    """Every pending transition since ``start``, from the state events."""
    pending = JobState.PENDING.value
    events = session.execute(
        select(EventRow.at, EventRow.job_id, EventRow.from_state, EventRow.to_state)
        .where(
            EventRow.at >= start,
            EventRow.kind == "state",
            or_(EventRow.to_state == pending, EventRow.from_state == pending),
        )
        .order_by(EventRow.id)
    ).all()
    steps = [
        (e.at, e.job_id, (e.to_state == pending) - (e.from_state == pending))
        for e in events
        if e.job_id is not None
    ]
    pending_now = list(session.scalars(select(JobRow.id).where(JobRow.state == pending)))
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


def _pending_matrix(steps: PendingSteps, index: dict[str, int], window: Window) -> np.ndarray:
    """Jobs pending at each bucket's end, per tenant: the count pending now, less every
    transition after that end."""
    ends = window.edges()[1:]
    depth = np.zeros((len(index), window.buckets))
    for job_id in steps.pending_now:
        job = steps.jobs.get(job_id)
        if job is not None and job[0] in index:
            depth[index[job[0]]] += 1
    known = [(at, index[steps.jobs[j][0]], d) for at, j, d in steps.steps if j in steps.jobs]
    known = [k for k in known if k[2]]
    if not known:
        return depth
    at = np.fromiter((k[0] for k in known), float, len(known))
    who = np.fromiter((k[1] for k in known), np.int64, len(known))
    delta = np.fromiter((k[2] for k in known), float, len(known))
    # An event at ``at`` comes after the ends of buckets 0..b-1, b = ends before it.
    after_bucket = np.searchsorted(ends, at, side="left")
    per_bin = np.zeros((len(index), window.buckets + 1))
    np.add.at(per_bin, (who, np.minimum(after_bucket, window.buckets)), delta)
    # Transitions after bucket k's end: those in bins k+1 and above.
    later = np.cumsum(per_bin[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return np.maximum(depth - later, 0.0)


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
    allocations: Sequence[Any],
    start: float,
    now: float,
    pending: PendingSteps,
) -> TenantSteps:
    """Quota attainment's input over [start, now] for every tenant."""
    quota_rows = list(session.scalars(select(QuotaRow)))
    guarantees = {(q.tenant, q.gpu_type): q.guaranteed_milli for q in quota_rows}
    only_type: dict[str, str | None] = {}
    for q in quota_rows:
        only_type[q.tenant] = q.gpu_type if q.tenant not in only_type else None
    deltas: list[tuple[float, str, str, int, int]] = []  # time, tenant, type, d_alloc, d_demand
    for r in allocations:
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
        if reason == PendingReason.WAITING_FOR_GUARANTEE:
            entry[2] += count
    return {t: TenantDemand(int(v[0]), round(v[1], 3), int(v[2])) for t, v in sorted(acc.items())}


@dataclass(frozen=True, slots=True)
class GpuHolder:
    """Who holds (a share of) one GPU."""

    tenant: str
    job_id: int
    milli: int


@dataclass(frozen=True, slots=True)
class GpuMap:
    """Every GPU of every node and who holds it, as flat rows (a thousand nodes make
    thousands of holders: few objects keep a page cheap)."""

    nodes: list[tuple[str, str, int, str, str]]
    """(name, GPU type, GPUs, state, rack), by rack then name."""
    holders: list[tuple[int, int, str, int, int]]
    """(node's index in ``nodes``, GPU index, tenant, job id, share in milli)."""

    def of(self, name: str) -> list[list[GpuHolder]]:
        """One node's GPUs, each with its holders."""
        index = next(i for i, n in enumerate(self.nodes) if n[0] == name)
        gpus: list[list[GpuHolder]] = [[] for _ in range(self.nodes[index][2])]
        for node, gpu, tenant, job_id, milli in self.holders:
            if node == index:
                gpus[gpu].append(GpuHolder(tenant, job_id, milli))
        return gpus


def gpu_map(session: Session, *, principal: Principal) -> GpuMap:
    """Every GPU of every node and who holds it: the operator's view."""
    principal.require_operator("see which tenant holds each GPU")
    nodes = sorted(
        session.execute(
            select(NodeRow.name, NodeRow.gpu_type, NodeRow.gpus, NodeRow.state, NodeRow.rack)
        ),
        key=lambda n: (n.rack, n.name),
    )
    index = {n.name: i for i, n in enumerate(nodes)}
    holders = []
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
        i = index.get(node)
        if i is None:
            continue
        for gpu in indices.split(","):
            if gpu and int(gpu) < nodes[i].gpus:
                holders.append((i, int(gpu), tenant, job_id, milli))
    return GpuMap([tuple(n) for n in nodes], holders)


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


def job_counts(
    session: Session,
    *,
    principal: Principal | None = None,
    states: Sequence[JobState] = (JobState.PENDING, JobState.STARTING, JobState.RUNNING),
) -> dict[str, int]:
    """Jobs in each of ``states``: the whole cluster's (``principal`` None: an aggregate
    everyone may see), or those ``principal`` may see. (Counting finished jobs too would
    read every job row; the states asked for are read through the state index.)"""
    wanted = [s.value for s in states]
    query = (
        select(JobRow.state, func.count()).where(JobRow.state.in_(wanted)).group_by(JobRow.state)
    )
    if principal is not None and not principal.is_operator:
        query = query.where(JobRow.tenant == principal.tenant)
    counts = dict.fromkeys(wanted, 0)
    counts.update({state: n for state, n in session.execute(query)})
    return counts
