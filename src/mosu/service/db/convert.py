"""Explicit conversions between ORM rows, API models and engine records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mosu.core.api import AllocationOut, EventOut, JobOut, JobState, Quota, TenantOut
from mosu.core.models import (
    GPU_MILLI,
    Job,
    JobKind,
    Node,
    NodeState,
    ReplicaPlacement,
    Shape,
    Tenant,
    Topology,
    requested_gpus,
)
from mosu.core.models import Quota as EngineQuota
from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow, TenantRow

if TYPE_CHECKING:
    from sqlalchemy import Row


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def gpus_of(row: JobRow | Row[Any]) -> float:
    """GPUs per replica as the user wrote them (0.5 for half a GPU)."""
    return requested_gpus(row.gpus, row.gpu_milli)


def engine_id(job_id: int) -> str:
    """A job's id as the engine names it. The engine's ids are text (a trace names its
    jobs); the platform's are integers everywhere else. This and ``platform_id`` are the
    only crossings, both on the store's side of the engine."""
    return str(job_id)


def platform_id(job_id: str) -> int:
    """The platform's id of a job the engine decided about (``engine_id`` backwards)."""
    return int(job_id)


def indices_of(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x != ""]


def allocation_out(row: AllocationRow) -> AllocationOut:
    return AllocationOut(
        replica=row.replica,
        node=row.node,
        gpu_indices=indices_of(row.gpu_indices),
        gpu_fraction=row.gpu_milli / GPU_MILLI,
        pid=row.pid,
    )


def job_out(row: JobRow, allocations: list[AllocationRow] | None = None) -> JobOut:
    return JobOut(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        kind=JobKind(row.kind),
        state=JobState(row.state),
        priority=row.priority,
        replicas=row.replicas,
        gpus=gpus_of(row),
        gpu_types=[t for t in row.gpu_types.split(",") if t],
        submitted_at=ts(row.submitted_at),
        started_at=ts(row.started_at),
        finished_at=ts(row.finished_at),
        attempts=row.attempts,
        exit_code=row.exit_code,
        message=row.message,
        stop_requested=row.stop_reason,
        pending_reason=row.pending_reason if row.state == JobState.PENDING else None,
        pending_message=row.pending_message if row.state == JobState.PENDING else None,
        estimated_start=ts(row.estimated_start) if row.state == JobState.PENDING else None,
        estimated_start_late=(
            ts(row.estimated_start_late) if row.state == JobState.PENDING else None
        ),
        last_checkpoint_at=ts(row.last_checkpoint_at),
        allocations=[allocation_out(a) for a in sorted(allocations or [], key=lambda a: a.replica)],
        spec=row.spec,
    )


def event_out(row: EventRow) -> EventOut:
    return EventOut(
        id=row.id,
        at=ts(row.at),
        job_id=row.job_id,
        tenant=row.tenant,
        kind=row.kind,
        from_state=row.from_state,
        to_state=row.to_state,
        reason=row.reason,
        message=row.message,
    )


def tenant_out(
    row: TenantRow, quotas: list[QuotaRow], allocated: dict[str, float] | None = None
) -> TenantOut:
    return TenantOut(
        name=row.name,
        weight=row.weight,
        cohort=row.cohort,
        quotas=[
            Quota(
                gpu_type=q.gpu_type,
                guaranteed=q.guaranteed_milli / GPU_MILLI,
                limit=None if q.limit_milli is None else q.limit_milli / GPU_MILLI,
            )
            for q in sorted(quotas, key=lambda q: q.gpu_type)
        ],
        allocated=allocated or {},
        created_at=ts(row.created_at),
    )


# ---------------------------------------------------------------- engine records


def engine_node(row: NodeRow) -> Node:
    return Node(
        name=row.name,
        gpu_type=row.gpu_type,
        gpus=row.gpus,
        cpu_milli=row.cpu_milli,
        mem_mib=row.mem_mib,
        gpu_mem_mib=row.gpu_mem_mib,
        zone=row.zone,
        rack=row.rack,
        state=NodeState(row.state),
    )


def engine_tenant(row: TenantRow, quotas: list[QuotaRow]) -> Tenant:
    return Tenant(
        name=row.name,
        quotas=tuple(
            (q.gpu_type, EngineQuota(q.guaranteed_milli, q.limit_milli))
            for q in sorted(quotas, key=lambda q: q.gpu_type)
        ),
        weight=row.weight,
        cohort=row.cohort,
    )


def history_size(row: JobRow | Row[Any]) -> tuple[str, int]:
    """(tenant, total GPU milli): what history's run times are learnt and looked up by
    (``HistoryEstimator``, ``ClusterSnapshot.history_estimates``)."""
    return row.tenant, row.gpus * row.gpu_milli * row.replicas


def engine_job(row: JobRow | Row[Any]) -> Job:
    """The engine's record, from a job row or a plain row of its columns."""
    shape = Shape(
        gpus=row.gpus,
        gpu_milli=row.gpu_milli if row.gpus else 0,
        cpu_milli=row.cpu_milli,
        mem_mib=row.mem_mib,
    )
    return Job(
        id=engine_id(row.id),
        tenant=row.tenant,
        shape=shape,
        replicas=row.replicas,
        gpu_types=tuple(t for t in row.gpu_types.split(",") if t),
        topology=Topology(row.topology),
        priority=row.priority,
        submit_s=row.submitted_at,
        estimate_s=row.estimate_s,
        checkpoint_every_s=row.checkpoint_every_s,
        kind=JobKind(row.kind),
    )


def engine_placement(
    rows: Sequence[AllocationRow] | Sequence[Row[Any]],
) -> tuple[ReplicaPlacement, ...]:
    return tuple(
        ReplicaPlacement(
            node=a.node,
            gpu_indices=tuple(indices_of(a.gpu_indices)),
            gpu_milli=a.gpu_milli,
            cpu_milli=a.cpu_milli,
            mem_mib=a.mem_mib,
        )
        for a in sorted(rows, key=lambda a: a.replica)
    )
