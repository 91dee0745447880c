"""Nodes: declared or discovered machines, their state and the cluster in aggregate."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.accelerators import describe, vendor_of
from mosu.core.api import (
    ACTIVE_STATES,
    ClusterOut,
    GpuTypeSummary,
    NodeCreate,
    NodeOut,
    parse_memory_mib,
)
from mosu.core.errors import Conflict, InvalidInput, NotFound
from mosu.core.executor import NodeReport
from mosu.core.models import GPU_MILLI, NodeState
from mosu.core.reasons import StopReason
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow
from mosu.service.services.auth import Principal


def register_node(session: Session, *, principal: Principal, body: NodeCreate) -> NodeOut:
    """Create the node, or update its capacity if it exists (state is kept)."""
    principal.require_operator("register nodes")
    vendor = vendor_of(body.gpu_type, body.gpu_vendor, field="gpu_vendor")
    other = session.scalars(
        select(NodeRow).where(
            NodeRow.gpu_type == body.gpu_type,
            NodeRow.vendor != vendor.value,
            NodeRow.name != body.name,
        )
    ).first()
    if other is not None:
        # One type, one vendor: quotas and jobs name the type, and every replica of a
        # type must get the same device contract.
        raise Conflict(
            f"GPU type {body.gpu_type} is {other.vendor}'s on node {other.name}; "
            "name this node's type differently",
            field="gpu_vendor",
        )
    parts = [p for p in body.topology.split("/") if p]
    if len(parts) > 3:
        raise InvalidInput("expected zone/rack/node", field="topology")
    zone = parts[0] if len(parts) >= 2 else "zone-0"
    rack = parts[1] if len(parts) >= 2 else (parts[0] if parts else "rack-0")
    row = session.get(NodeRow, body.name)
    if row is None:
        row = NodeRow(name=body.name, state=NodeState.READY.value, created_at=time.time())
        session.add(row)
        kind = "node-registered"
    else:
        kind = "node-updated"
        _check_in_use(session, row, body, vendor.value)
    row.gpu_type = body.gpu_type
    row.vendor = vendor.value
    row.gpus = body.gpus
    row.cpu_milli = round(body.cpu * 1000)
    row.mem_mib = parse_memory_mib(body.memory)
    known = describe(body.gpu_type)
    row.gpu_mem_mib = parse_memory_mib(body.gpu_memory) or (known.memory_mib if known else 0)
    row.zone = zone
    row.rack = rack
    session.add(
        EventRow(
            at=time.time(),
            kind=kind,
            message=f"{body.name}: {body.gpus} x {body.gpu_type} ({vendor.value})",
        )
    )
    session.flush()
    return _out(row, _allocated_by_node(session).get(row.name, 0.0))


def sync_cluster_nodes(session: Session, found: Sequence[NodeReport]) -> bool:
    """Mirror the nodes an executor discovered (the Ray cluster is then the source of
    truth): new ones are registered, capacities follow, a node that is gone or dead goes
    ``down`` and the jobs on it get a stop request that requeues them; a node back alive
    is ``ready`` again (a drain is kept). True if any job was asked to stop."""
    now = time.time()
    seen = {r.node.name: r.node for r in found}
    stops = False
    # One read of every row's columns, and an object only for a row that changes: a
    # simulated cluster mirrors thousands of nodes every tick, nearly always as they are.
    stored = {row.name: row for row in session.execute(select(*_MIRRORED))}
    for report in found:
        node = report.node
        have = stored.get(node.name)
        if have is None:
            if node.state == NodeState.DOWN:
                continue
            row = NodeRow(name=node.name, state=NodeState.READY.value, created_at=now)
            session.add(row)
            session.add(EventRow(at=now, kind="node-registered", message=f"{node.name}: found"))
        elif node.state == NodeState.DOWN or _mirrors(have, report):
            continue
        else:
            row = session.get_one(NodeRow, node.name)
        row.gpu_type, row.gpus = node.gpu_type, node.gpus
        row.vendor = (report.vendor or vendor_of(node.gpu_type)).value
        row.cpu_milli, row.mem_mib, row.gpu_mem_mib = (
            node.cpu_milli,
            node.mem_mib,
            node.gpu_mem_mib,
        )
        row.zone, row.rack = node.zone, node.rack
        if report.sandbox is not None:
            row.sandbox = report.sandbox
        if row.state == NodeState.DOWN.value:
            row.state = NodeState.READY.value
            session.add(EventRow(at=now, kind="node-ready", message=f"{node.name}: back"))
    for name, have in stored.items():
        if have.state == NodeState.DOWN.value:
            continue
        gone = seen.get(name)
        if gone is None or gone.state == NodeState.DOWN:
            row = session.get_one(NodeRow, name)
            row.state = NodeState.DOWN.value
            session.add(EventRow(at=now, kind="node-down", message=f"{row.name}: unreachable"))
            stops |= _stop_jobs_on(session, row.name, now)
    session.flush()
    return stops


_MIRRORED = (
    NodeRow.name,
    NodeRow.state,
    NodeRow.gpu_type,
    NodeRow.gpus,
    NodeRow.vendor,
    NodeRow.cpu_milli,
    NodeRow.mem_mib,
    NodeRow.gpu_mem_mib,
    NodeRow.zone,
    NodeRow.rack,
    NodeRow.sandbox,
)


def _mirrors(have: Any, report: NodeReport) -> bool:
    """Whether a stored node (its ``_MIRRORED`` columns) is up and already says what a
    live report says."""
    node = report.node
    vendor = (report.vendor or vendor_of(node.gpu_type)).value
    return (
        have.state != NodeState.DOWN.value
        and (report.sandbox is None or have.sandbox == report.sandbox)
        and (
            have.gpu_type,
            have.gpus,
            have.vendor,
            have.cpu_milli,
            have.mem_mib,
            have.gpu_mem_mib,
            have.zone,
            have.rack,
        )
        == (
            node.gpu_type,
            node.gpus,
            vendor,
            node.cpu_milli,
            node.mem_mib,
            node.gpu_mem_mib,
            node.zone,
            node.rack,
        )
    )


def report_sandbox(session: Session, *, name: str, sandbox: str) -> None:
    """Record how the node's executor runs replicas (``mosu node list`` shows it)."""
    row = session.get(NodeRow, name)
    if row is not None and row.sandbox != sandbox:
        row.sandbox = sandbox
        session.add(EventRow(at=time.time(), kind="node-sandbox", message=f"{name}: {sandbox}"))


def _stop_jobs_on(
    session: Session,
    node: str,
    now: float,
    *,
    reason: StopReason = StopReason.NODE_DOWN,
    message: str = "",
) -> bool:
    allocs = list(
        session.scalars(
            select(AllocationRow).where(
                AllocationRow.node == node, AllocationRow.released_at.is_(None)
            )
        )
    )
    stopped = False
    for job_id in sorted({a.job_id for a in allocs}):
        job = session.get(JobRow, job_id)
        if job is None or job.state not in ACTIVE_STATES or job.stop_reason is not None:
            continue
        job.stop_reason, job.stop_signalled = reason, False
        session.add(
            EventRow(
                at=now,
                job_id=job.id,
                tenant=job.tenant,
                kind="stop-requested",
                reason=reason,
                message=message or f"node {node} is down",
            )
        )
        stopped = True
    return stopped


def _check_in_use(session: Session, row: NodeRow, body: NodeCreate, vendor: str) -> None:
    """A node's type, vendor or GPU count may change only where no running job holds a
    GPU: a running replica was shown its devices through its vendor's variable."""
    held = [
        int(g)
        for a in session.scalars(
            select(AllocationRow).where(
                AllocationRow.node == row.name, AllocationRow.released_at.is_(None)
            )
        )
        for g in a.gpu_indices.split(",")
        if g
    ]
    if held and body.gpu_type != row.gpu_type:
        raise Conflict(
            f"node {row.name} runs jobs on its {row.gpu_type} GPUs; drain it first",
            field="gpu_type",
        )
    if held and vendor != row.vendor:
        raise Conflict(
            f"node {row.name} runs jobs on its {row.vendor} GPUs; drain it first",
            field="gpu_vendor",
        )
    if held and max(held) >= body.gpus:
        raise Conflict(
            f"node {row.name} has a job on GPU {max(held)}; drain it before shrinking it",
            field="gpus",
        )


def _allocated_by_node(session: Session) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for a in session.scalars(select(AllocationRow).where(AllocationRow.released_at.is_(None))):
        gpus = len(a.gpu_indices.split(",")) if a.gpu_indices else 0
        out[a.node] += gpus * a.gpu_milli / GPU_MILLI
    return out


def _out(row: NodeRow, allocated: float) -> NodeOut:
    return NodeOut(
        name=row.name,
        gpu_type=row.gpu_type,
        vendor=row.vendor,
        gpus=row.gpus,
        gpu_memory_mib=row.gpu_mem_mib,
        cpu=row.cpu_milli / 1000,
        memory_mib=row.mem_mib,
        zone=row.zone,
        rack=row.rack,
        state=NodeState(row.state),
        allocated_gpus=round(allocated, 3),
        sandbox=row.sandbox,
    )


def list_nodes(session: Session, *, principal: Principal) -> list[NodeOut]:
    principal.require_operator("list nodes (a tenant sees the cluster in aggregate: mosu cluster)")
    allocated = _allocated_by_node(session)
    rows = session.scalars(select(NodeRow).order_by(NodeRow.name))
    return [_out(row, allocated.get(row.name, 0.0)) for row in rows]


def set_state(
    session: Session,
    *,
    principal: Principal,
    name: str,
    state: NodeState,
    stop_jobs: bool = False,
) -> NodeOut:
    """Drain or undrain a node. With ``stop_jobs`` a drain also stops every job running
    there (every process of it) and requeues it: the explicit way to stop a node's work."""
    principal.require_operator("drain nodes")
    row = session.get(NodeRow, name)
    if row is None:
        raise NotFound(f"no node named {name!r}", field="node")
    now = time.time()
    if row.state != state.value:
        session.add(EventRow(at=now, kind=f"node-{state.value}", message=f"{name}: {state.value}"))
        row.state = state.value
    if stop_jobs and state == NodeState.DRAINING:
        drained = f"node {name} is drained"
        _stop_jobs_on(session, name, now, reason=StopReason.DRAIN, message=drained)
    session.flush()
    return _out(row, _allocated_by_node(session).get(name, 0.0))


def cluster_summary(session: Session) -> ClusterOut:
    """Capacity, use and guarantees per GPU type; a type tenants are guaranteed but no
    node has is listed too (with 0 GPUs), since that guarantee cannot be met."""
    allocated = _allocated_by_node(session)
    by_type: dict[str, list[NodeRow]] = defaultdict(list)
    for row in session.scalars(select(NodeRow).order_by(NodeRow.name)):
        by_type[row.gpu_type].append(row)
    guaranteed: dict[str, int] = defaultdict(int)
    for gpu_type, milli in session.execute(
        select(QuotaRow.gpu_type, func.sum(QuotaRow.guaranteed_milli)).group_by(QuotaRow.gpu_type)
    ):
        guaranteed[gpu_type] += int(milli or 0)
    summaries = []
    for gpu_type in sorted({*by_type, *(t for t, m in guaranteed.items() if m > 0)}):
        rows = by_type.get(gpu_type, [])
        total = sum(r.gpus for r in rows)
        used = round(sum(allocated.get(r.name, 0.0) for r in rows), 3)
        promised = guaranteed.get(gpu_type, 0) / GPU_MILLI
        summaries.append(
            GpuTypeSummary(
                gpu_type=gpu_type,
                # A type only promised, with no node yet, is named by the model table.
                vendor=rows[0].vendor if rows else vendor_of(gpu_type).value,
                nodes=len(rows),
                gpus=total,
                allocated=used,
                free=round(total - used, 3),
                guaranteed=round(promised, 3),
                overcommitted=round(max(0.0, promised - total), 3),
            )
        )
    counts: dict[str, int] = {
        state: n
        for state, n in session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
    }
    return ClusterOut(
        gpu_types=summaries,
        jobs_pending=counts.get("pending", 0),
        jobs_running=counts.get("running", 0) + counts.get("starting", 0),
    )
