"""The platform's own history as a trace: jobs, tenants and nodes in mosu's native format.

Each job becomes a ``TraceJob`` whose ``duration_s`` is what a replay should run it for:

- it ended by itself (exit code 0 or not), or after its ``max_runtime``: the run time
  of its last attempt (a requeued job restarts its command, so the last attempt is the
  whole run);
- it was cancelled: the run time of its last attempt (0 if it never started);
- it is still running: what its current attempt has run so far (a lower bound);
- it is still pending: its user estimate, else 0.

Its ``history`` keeps what really happened: how it ended, its first start and the run
time of every attempt, read from the allocation rows (``allocated_at`` to
``released_at``; a running attempt up to ``now``). Times are on the trace's clock:
seconds since ``origin``, the first exported submission.

The tenants and nodes are those in force at ``origin``; what changed during the window
(quotas, weights, cohorts; nodes registered, drained, down or back) is carried as timed
changes (``changes.csv``), read from the platform's events, so a replay applies each
at its time. A tenant or node created during the window is written with no quota (or
``down``) and its creation is a change.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.credits import Rate
from mosu.core.models import Node, NodeState, Tenant
from mosu.core.reasons import StopReason
from mosu.service.db.convert import engine_job, engine_node, engine_tenant
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services.auth import Principal
from mosu.service.services.credits_meter import load_card
from mosu.service.services.tenants import settings_of
from mosu.sim.credits import rates_csv
from mosu.traces import native
from mosu.traces.schema import ChangeKind, Ended, JobHistory, TimedChange, TraceJob

_ENDED_BY_STATE = {
    JobState.SUCCEEDED: Ended.EXIT,
    JobState.FAILED: Ended.EXIT,
    JobState.CANCELLED: Ended.CANCELLED,
    JobState.PENDING: Ended.PENDING,
    JobState.STARTING: Ended.RUNNING,
    JobState.RUNNING: Ended.RUNNING,
    JobState.PREEMPTED: Ended.RUNNING,
}


@dataclass
class HistoryExport:
    """One window of the platform's history, ready to be written or replayed."""

    jobs: list[TraceJob]
    tenants: list[Tenant]
    nodes: list[Node]
    origin: float
    """Epoch seconds of trace time 0."""
    since: float | None
    until: float
    profile: str
    min_runtime_s: float | None = None
    """The platform's override of the profile's shortest run before a preemption."""
    counts: dict[str, int] = field(default_factory=dict)
    """Jobs per way they ended (``Ended`` values), and ``jobs`` in all."""
    rates: list[Rate] = field(default_factory=list)
    """The rate card's GPU, CPU and memory lines (epoch times); none: no credits."""
    changes: list[TimedChange] = field(default_factory=list)
    """Quota and node changes made during the window, on the trace clock."""

    def meta(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "since": self.since,
            "until": self.until,
            "profile": self.profile,
            "min_runtime_s": self.min_runtime_s,
            "counts": dict(self.counts),
            "changes": len(self.changes),
        }

    def files(self) -> dict[str, str]:
        """The three native CSV files, by name, and ``rates.csv`` when the platform has
        a rate card (its times on the trace clock)."""
        out: dict[str, str] = {}
        for name, write, items in (
            ("jobs.csv", native.write_jobs, self.jobs),
            ("tenants.csv", native.write_tenants, self.tenants),
            ("nodes.csv", native.write_nodes, self.nodes),
        ):
            buffer = io.StringIO()
            write(buffer, items)  # type: ignore[operator]
            out[name] = buffer.getvalue()
        if self.rates:
            out["rates.csv"] = rates_csv(self.rates, self.origin)
        if self.changes:
            buffer = io.StringIO()
            native.write_changes(buffer, self.changes)
            out["changes.csv"] = buffer.getvalue()
        return out


def export_history(
    session: Session,
    *,
    principal: Principal,
    now: float,
    since: float | None = None,
    until: float | None = None,
    profile: str = "mosu",
    min_runtime_s: float | None = None,
) -> HistoryExport:
    """Jobs submitted in [``since``, ``until``) (``until`` defaults to ``now``), with the
    tenants, quotas and nodes in force at the first submission and what changed after it
    within the window. Operator only."""
    principal.require_operator("export the platform's history")
    end = now if until is None else until  # an empty window exports no job
    query = select(JobRow).where(JobRow.submitted_at < end)
    if since is not None:
        query = query.where(JobRow.submitted_at >= since)
    rows = list(session.scalars(query.order_by(JobRow.submitted_at, JobRow.id)))
    ids = [r.id for r in rows]
    attempts = _attempts(session, ids, now)
    timed_out = _max_runtime_failures(session, ids)
    origin = rows[0].submitted_at if rows else (since if since is not None else end)
    jobs: list[TraceJob] = []
    counts: Counter[str] = Counter()
    for row in rows:
        ended = _ENDED_BY_STATE[JobState(row.state)]
        if ended is Ended.EXIT and row.id in timed_out:
            ended = Ended.MAX_RUNTIME
        runs = attempts.get(row.id, [])
        jobs.append(_trace_job(row, ended, runs, origin))
        counts[ended.value] += 1
    counts["jobs"] = len(rows)
    tenant_rows = list(
        session.scalars(select(TenantRow).order_by(TenantRow.created_at, TenantRow.name))
    )
    tenants = [
        engine_tenant(t, list(session.scalars(select(QuotaRow).where(QuotaRow.tenant == t.name))))
        for t in tenant_rows
    ]
    node_rows = list(session.scalars(select(NodeRow).order_by(NodeRow.name)))
    events = list(
        session.execute(
            select(EventRow.at, EventRow.kind, EventRow.tenant, EventRow.message)
            .where(EventRow.kind.in_((*_TENANT_KINDS, *_NODE_KINDS)), EventRow.at < end)
            .order_by(EventRow.at, EventRow.id)
        )
    )
    created = {t.name: t.created_at for t in tenant_rows}
    tenants, tenant_changes = _tenants_over(tenants, created, events, origin)
    nodes, node_changes = _nodes_over(node_rows, events, origin)
    changes = sorted([*tenant_changes, *node_changes], key=lambda c: c.time_s)
    return HistoryExport(
        jobs,
        tenants,
        nodes,
        origin,
        since,
        end,
        profile,
        min_runtime_s,
        dict(counts),
        load_card(session).lines(),
        changes,
    )


_TENANT_KINDS = ("tenant-created", "quota-changed", "tenant-changed")
_NODE_KINDS = {
    "node-registered": NodeState.READY,
    "node-ready": NodeState.READY,
    "node-draining": NodeState.DRAINING,
    "node-down": NodeState.DOWN,
}
Event = tuple[float, str, str | None, str]
"""An event row's ``at``, ``kind``, ``tenant`` and ``message``."""


def _tenants_over(
    now: list[Tenant], created: dict[str, float], events: Iterable[Event], origin: float
) -> tuple[list[Tenant], list[TimedChange]]:
    """Each tenant as it was at ``origin`` and its changes after, from its events: the
    events up to ``origin`` give what was in force then (a tenant created later starts
    with no quota, its creation's settings being changes); a tenant with no creation
    event, and a weight no event records, are taken as they are now."""
    seen: dict[str, list[Event]] = {}
    for event in events:
        if event[1] in _TENANT_KINDS and event[2] is not None:
            seen.setdefault(event[2], []).append(event)
    out: list[Tenant] = []
    changes: list[TimedChange] = []
    for tenant in now:
        mine = seen.get(tenant.name, [])
        if not any(kind == "tenant-created" for _, kind, _, _ in mine):
            start = tenant
            before: list[Event] = []
        else:
            start = Tenant(tenant.name, weight=1.0)
            before = [e for e in mine if e[0] <= origin]
            if created.get(tenant.name, origin) > origin:  # created in the window
                first = settings_of("tenant-created", mine[0][3])
                start = replace(start, weight=first.weight or 1.0, cohort=first.cohort)
        quotas = dict(start.quotas)
        for _, kind, _, message in before:
            s = settings_of(kind, message)
            quotas.update(s.quotas)
            if s.weight is not None or kind == "tenant-created":
                start = replace(start, weight=s.weight or 1.0)
            if s.cohort_set:
                start = replace(start, cohort=s.cohort)
        if not any(settings_of(kind, message).weight is not None for _, kind, _, message in mine):
            start = replace(start, weight=tenant.weight)  # never changed: as it is now
        out.append(replace(start, quotas=tuple(sorted(quotas.items()))))
        for at, kind, _, message in mine:
            if at <= origin:
                continue
            s = settings_of(kind, message)
            t = at - origin
            for gpu_type, quota in sorted(s.quotas.items()):
                changes.append(
                    TimedChange(t, ChangeKind.QUOTA, tenant.name, gpu_type=gpu_type, quota=quota)
                )
            if kind == "tenant-created":
                continue  # its weight and cohort are the start's
            if s.weight is not None:
                changes.append(TimedChange(t, ChangeKind.WEIGHT, tenant.name, weight=s.weight))
            if s.cohort_set:
                changes.append(TimedChange(t, ChangeKind.COHORT, tenant.name, cohort=s.cohort))
    return out, changes


def _nodes_over(
    rows: list[NodeRow], events: Iterable[Event], origin: float
) -> tuple[list[Node], list[TimedChange]]:
    """Each node in the state it was in at ``origin`` (``down`` if registered later) and
    its state changes after, from its registration and state events."""
    by_node: dict[str, list[tuple[float, NodeState]]] = {}
    for at, kind, _, message in events:
        state = _NODE_KINDS.get(kind)
        if state is not None:
            name = message.partition(": ")[0]
            by_node.setdefault(name, []).append((at, state))
    nodes: list[Node] = []
    changes: list[TimedChange] = []
    for row in rows:
        node = engine_node(row)
        mine = by_node.get(row.name, [])
        if mine or row.created_at > origin:
            # Registered later: not there at the start (its registration is a change).
            state = NodeState.DOWN if row.created_at > origin else NodeState.READY
            for at, then in mine:
                if at <= origin:
                    state = then
                else:
                    changes.append(
                        TimedChange(at - origin, ChangeKind.NODE, row.name, node_state=then)
                    )
            node = replace(node, state=state)
        nodes.append(node)
    return nodes, changes


def _trace_job(
    row: JobRow, ended: Ended, runs: list[tuple[float, float]], origin: float
) -> TraceJob:
    job = engine_job(row)
    run_times = tuple(max(0.0, stop - start) for start, stop in runs)
    if ended is Ended.PENDING:
        duration = row.estimate_s or 0.0
    else:
        duration = run_times[-1] if run_times else 0.0
    return TraceJob(
        id=job.id,
        tenant=job.tenant,
        submit_s=row.submitted_at - origin,
        duration_s=duration,
        shape=job.shape,
        replicas=job.replicas,
        gpu_types=job.gpu_types,
        priority=job.priority,
        kind=job.kind,
        estimate_s=job.estimate_s,
        topology=job.topology,
        history=JobHistory(
            ended=ended,
            start_s=runs[0][0] - origin if runs else None,
            attempts_s=run_times,
        ),
    )


def _attempts(session: Session, ids: list[int], now: float) -> dict[int, list[tuple[float, float]]]:
    """Per job, (start, end) of each attempt in order: its replicas' earliest allocation
    and latest release (``now`` while one still holds its GPUs)."""
    spans: dict[int, dict[int, tuple[float, float]]] = {}
    for chunk in _chunks(ids):
        query = select(
            AllocationRow.job_id,
            AllocationRow.attempt,
            AllocationRow.allocated_at,
            AllocationRow.released_at,
        ).where(AllocationRow.job_id.in_(chunk))
        for job_id, attempt, allocated, released in session.execute(query):
            stop = now if released is None else released
            per_job = spans.setdefault(job_id, {})
            if attempt in per_job:
                first, last = per_job[attempt]
                per_job[attempt] = (min(first, allocated), max(last, stop))
            else:
                per_job[attempt] = (allocated, stop)
    return {job: [per[a] for a in sorted(per)] for job, per in spans.items()}


def _max_runtime_failures(session: Session, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(ids):
        found.update(
            session.scalars(
                select(EventRow.job_id).where(
                    EventRow.job_id.in_(chunk),
                    EventRow.to_state == JobState.FAILED.value,
                    EventRow.reason == StopReason.MAX_RUNTIME.value,
                )
            )
        )
    return found


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    # Bounded IN lists: SQLite caps bound parameters per statement.
    return [ids[i : i + size] for i in range(0, len(ids), size)]
