"""Submitting, reading and cancelling jobs; a tenant sees only its own (others are 404)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from mosu.core.accelerators import check_fraction, supports_sharing
from mosu.core.api import (
    ACTIVE_STATES,
    EventOut,
    JobOut,
    JobState,
    JobWhy,
    LogChunk,
)
from mosu.core.errors import CapacityError, InvalidInput, NotFound
from mosu.core.models import GPU_MILLI, NodeState, Topology
from mosu.core.reasons import PendingReason, StopReason
from mosu.core.submission import Submission
from mosu.service.db import bulk
from mosu.service.db.convert import event_out, job_out, ts
from mosu.service.db.rows import AllocationRow, EventRow, JobRow
from mosu.service.services.auth import Principal
from mosu.service.services.catalog import Catalog, CatalogCache, NodeFacts
from mosu.service.services.lifecycle import active_allocations, transition
from mosu.service.services.secrets import check_exist

MAX_LOG_CHUNK = 1 << 20


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_fits_cluster(catalog: Catalog, job: Submission, tenant: str) -> None:
    """Refuse at submit what could never start, instead of leaving it pending forever."""
    nodes = [n for n in catalog.nodes if n.state != NodeState.DOWN.value]
    known_types = sorted({n.gpu_type for n in nodes})
    wanted = job.gpu_types
    for gpu_type in wanted:
        if gpu_type not in known_types:
            have = ", ".join(known_types) or "none registered"
            raise InvalidInput(
                f"unknown GPU type {gpu_type!r}; this cluster has: {have}", field="gpu_type"
            )
    shape = job.shape
    if 0 < job.gpus < 1:
        _check_sharing(nodes, wanted, job.gpus)
    usable = [n for n in nodes if not wanted or n.gpu_type in wanted]
    # Whole devices per replica; the count as written (``4.0`` from JSON) keeps the
    # wording of the messages below.
    per_replica = job.gpus if job.gpus >= 1 else shape.gpus
    cpu_milli = shape.cpu_milli
    mem = shape.mem_mib

    def replica_fits(n: NodeFacts) -> bool:
        return n.gpus >= per_replica and n.cpu_milli >= cpu_milli and n.mem_mib >= mem

    fitting = [n for n in usable if replica_fits(n)]
    if not fitting:
        biggest = max((n.gpus for n in usable), default=0)
        if per_replica > biggest:
            raise CapacityError(
                f"one replica asks for {_fmt(job.gpus)} GPUs but the largest node has {biggest}",
                field="gpus",
            )
        raise CapacityError("no node has enough CPU and memory for one replica", field="cpu")
    total = per_replica * job.replicas
    by_type: dict[str, int] = defaultdict(int)
    for n in fitting:
        by_type[n.gpu_type] += n.gpus * n.count
    if job.topology == Topology.SAME_NODE:
        biggest = max(n.gpus for n in fitting)
        if total > biggest:
            raise CapacityError(
                f"same-node job needs {total} GPUs on one node; the largest has {biggest}",
                field="gpus",
            )
    if per_replica and total > max(by_type.values()):
        raise CapacityError(
            f"job needs {total} GPUs in all but the cluster has at most "
            f"{max(by_type.values())} of one type",
            field="gpus",
        )
    types = wanted or tuple(sorted({n.gpu_type for n in catalog.nodes}))
    _check_tenant_limit(catalog.limits.get(tenant, {}), tenant, types, job.total_gpu_milli)


def _check_sharing(nodes: list[NodeFacts], wanted: tuple[str, ...], gpus: float) -> None:
    """A share of one device only on types whose vendor lets replicas share a device."""
    vendors = {n.gpu_type: n.vendor for n in nodes}
    for gpu_type in wanted:
        check_fraction(gpu_type, gpus, vendors[gpu_type], field="gpus")
    if wanted:
        return
    # No type named: the job could land on any type, so every type must share.
    whole = sorted(t for t, v in vendors.items() if not supports_sharing(t, v))
    if whole:
        shared = sorted(t for t, v in vendors.items() if supports_sharing(t, v))
        hint = f"name one of {', '.join(shared)}" if shared else "no type here allows sharing"
        raise InvalidInput(
            f"{_fmt(gpus)} of a device needs a GPU type that allows sharing, and "
            f"{', '.join(whole)} here is scheduled in whole devices only: {hint}",
            field="gpu_type",
        )


def _check_tenant_limit(
    quotas: dict[str, int | None], tenant: str, types: tuple[str, ...], total_milli: int
) -> None:
    if total_milli == 0:
        return
    limits = []
    for gpu_type in types:
        key = gpu_type if gpu_type in quotas else "*"
        limits.append(quotas.get(key))
    if limits and all(lim is not None and lim < total_milli for lim in limits):
        best = max(lim for lim in limits if lim is not None) / GPU_MILLI
        raise CapacityError(
            f"job needs {total_milli / GPU_MILLI:g} GPUs but tenant {tenant!r} may hold at most "
            f"{best:g}; ask the operator to raise the limit",
            field="gpus",
        )


def submit(
    session: Session,
    *,
    principal: Principal,
    job: Submission,
    tenant: str | None,
    catalog: CatalogCache | None = None,
) -> JobOut:
    owner = check_submission(session, principal=principal, job=job, tenant=tenant, catalog=catalog)
    return insert_job(session, job=job, tenant=owner)


def check_submission(
    session: Session,
    *,
    principal: Principal,
    job: Submission,
    tenant: str | None,
    catalog: CatalogCache | None = None,
) -> str:
    """The tenant a submission is for, once it is known it could ever start."""
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    if tenant is None:
        raise InvalidInput("the operator must name the tenant to submit for", field="tenant")
    facts = (catalog or CatalogCache(ttl_s=0)).get(session, require_tenant=tenant)
    if tenant not in facts.limits:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    check_fits_cluster(facts, job, tenant)
    check_exist(session, tenant=tenant, names=list(job.secrets))
    return tenant


def insert_job(session: Session, *, job: Submission, tenant: str) -> JobOut:
    """Store one checked submission (``insert_jobs`` of one)."""
    return insert_jobs(session, [(job, tenant)])[0]


def insert_jobs(session: Session, entries: Sequence[tuple[Submission, str]]) -> list[JobOut]:
    """Store checked submissions, each with its tenant: the jobs and their "submitted"
    events, in the order given. Their columns are the submissions' fields as they are."""
    if not entries:
        return []
    now = time.time()
    rows = [
        {
            "tenant": tenant,
            "name": job.name,
            "kind": job.kind.value,
            "state": JobState.PENDING.value,
            "priority": job.priority,
            "replicas": job.replicas,
            "gpus": job.shape.gpus,
            "gpu_milli": job.shape.gpu_milli,
            "gpu_types": ",".join(job.gpu_types),
            "cpu_milli": job.shape.cpu_milli,
            "mem_mib": job.shape.mem_mib,
            "topology": job.topology.value,
            "estimate_s": job.estimate_s,
            "max_runtime_s": job.max_runtime_s,
            "checkpoint_every_s": job.checkpoint_every_s,
            "checkpoint_signal": job.checkpoint_signal,
            "checkpoint_grace_s": job.checkpoint_grace_s,
            "spec": job.spec,
            "submitted_at": now,
            "attempts": 0,
            "attained_gpu_s": 0.0,
            "message": "",
            "stop_signalled": False,
        }
        for job, tenant in entries
    ]
    # Core inserts, not the ORM unit of work: submissions are the API's hottest write and
    # need none of the identity map's bookkeeping; a group commit's jobs go in one
    # statement (ids returned in the order given) and their events in another, each of
    # one text whatever the batch's size on PostgreSQL (``bulk``). Both
    # commit in the caller's transaction, so an acknowledged job always has its
    # "submitted" event.
    conn = session.connection()
    ids = bulk.insert_rows(conn, _INSERT_JOBS, rows, returning=JobRow.__table__.c.id)
    bulk.insert_rows(
        conn,
        _INSERT_EVENT,
        [
            {
                "at": now,
                "job_id": job_id,
                "tenant": tenant,
                "kind": "state",
                "from_state": None,
                "to_state": JobState.PENDING.value,
                "reason": "submitted",
                "message": f"{job.replicas} x {_fmt(job.gpus)} GPU",
            }
            for job_id, (job, tenant) in zip(ids, entries, strict=True)
        ],
    )
    return [
        JobOut(
            id=job_id,
            name=job.name,
            tenant=tenant,
            kind=job.kind,
            state=JobState.PENDING,
            priority=job.priority,
            replicas=job.replicas,
            gpus=job.shape.requested_gpus,
            gpu_types=list(job.gpu_types),
            submitted_at=ts(now),
            spec=job.spec,
        )
        for job_id, (job, tenant) in zip(ids, entries, strict=True)
    ]


_INSERT_JOBS = insert(JobRow.__table__)
_INSERT_EVENT = insert(EventRow.__table__)


def get_row(session: Session, *, principal: Principal, job_id: int) -> JobRow:
    row = session.get(JobRow, job_id)
    if row is None or (not principal.is_operator and row.tenant != principal.tenant):
        raise NotFound(f"no job {job_id}", field="job_id")
    return row


def get_job(session: Session, *, principal: Principal, job_id: int) -> JobOut:
    row = get_row(session, principal=principal, job_id=job_id)
    return job_out(row, active_allocations(session, row.id))


def list_jobs(
    session: Session,
    *,
    principal: Principal,
    state: JobState | None = None,
    tenant: str | None = None,
    limit: int = 200,
) -> list[JobOut]:
    query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    if tenant is not None:
        query = query.where(JobRow.tenant == tenant)
    if state is not None:
        query = query.where(JobRow.state == state.value)
    rows = list(session.scalars(query))
    active_ids = [r.id for r in rows if r.state in ACTIVE_STATES]
    allocs: dict[int, list[AllocationRow]] = defaultdict(list)
    if active_ids:
        for a in session.scalars(
            select(AllocationRow).where(
                AllocationRow.job_id.in_(active_ids), AllocationRow.released_at.is_(None)
            )
        ):
            allocs[a.job_id].append(a)
    return [job_out(r, allocs.get(r.id)) for r in rows]


def cancel(session: Session, *, principal: Principal, job_id: int) -> JobOut:
    row = get_row(session, principal=principal, job_id=job_id)
    state = JobState(row.state)
    if state == JobState.PENDING:
        transition(session, row, JobState.CANCELLED, reason="cancel", message="cancelled by user")
        row.message = "cancelled"
    elif state in ACTIVE_STATES and row.stop_reason != StopReason.CANCEL:
        row.stop_reason = StopReason.CANCEL
        row.stop_signalled = False
        session.add(
            EventRow(
                at=time.time(),
                job_id=row.id,
                tenant=row.tenant,
                kind="stop-requested",
                reason=StopReason.CANCEL,
                message="cancelled by user",
            )
        )
    session.flush()
    return job_out(row, active_allocations(session, row.id))


def events(
    session: Session,
    *,
    principal: Principal,
    job_id: int | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[EventOut]:
    query = select(EventRow).where(EventRow.id > after_id).order_by(EventRow.id).limit(limit)
    if job_id is not None:
        get_row(session, principal=principal, job_id=job_id)
        query = query.where(EventRow.job_id == job_id)
    elif not principal.is_operator:
        query = query.where(
            EventRow.tenant == principal.tenant,
            or_(EventRow.job_id.is_not(None), EventRow.kind == "credits-alert"),
        )
    return [event_out(r) for r in session.scalars(query)]


def why(session: Session, *, principal: Principal, job_id: int, position: int | None) -> JobWhy:
    row = get_row(session, principal=principal, job_id=job_id)
    state = JobState(row.state)
    reason: PendingReason | StopReason | None = None
    if state == JobState.PENDING:
        reason = row.pending_reason
        if reason is None:
            sentence = f"Job {row.id} is pending and has not been through a scheduling cycle yet."
        else:
            where = f", number {position} in the queue" if position is not None else ""
            eta = "; when it starts is unknown (what it waits for has no estimate or history)"
            if row.estimated_start is not None:
                eta = f"; likely start {ts(row.estimated_start):%Y-%m-%d %H:%M:%S} UTC"
                if row.estimated_start_late is not None:
                    eta += f", by {ts(row.estimated_start_late):%H:%M:%S} nine times in ten"
            sentence = f"Job {row.id} is pending ({reason}{where}): {row.pending_message}{eta}."
    elif state in ACTIVE_STATES:
        allocs = active_allocations(session, row.id)
        nodes = ", ".join(f"{a.node}[{a.gpu_indices}]" for a in allocs)
        stopping = f", stopping ({row.stop_reason})" if row.stop_reason else ""
        sentence = f"Job {row.id} is {state.value} on {nodes or 'no GPUs'}{stopping}."
        reason = row.stop_reason
    elif state == JobState.SUCCEEDED:
        sentence = f"Job {row.id} succeeded."
    elif state == JobState.CANCELLED:
        sentence = f"Job {row.id} was cancelled."
    else:
        sentence = f"Job {row.id} {state.value}: {row.message or 'no details'}."
    return JobWhy(
        id=row.id,
        state=state,
        reason=reason,
        sentence=sentence,
        position=position if state == JobState.PENDING else None,
        estimated_start=ts(row.estimated_start) if state == JobState.PENDING else None,
        estimated_start_late=ts(row.estimated_start_late) if state == JobState.PENDING else None,
    )


def log_path(logs_dir: Path, job_id: int, replica: int) -> Path:
    return logs_dir / str(job_id) / f"replica-{replica}.log"


def read_logs(
    session: Session,
    *,
    principal: Principal,
    logs_dir: Path,
    job_id: int,
    replica: int,
    offset: int,
    limit: int = MAX_LOG_CHUNK,
) -> LogChunk:
    row = get_row(session, principal=principal, job_id=job_id)
    if not 0 <= replica < row.replicas:
        # A replica that does not exist is a log that does not exist.
        raise NotFound(
            f"job {job_id} has no replica {replica} (replicas 0..{row.replicas - 1})",
            field="replica",
        )
    path = log_path(logs_dir, job_id, replica)
    data = b""
    if path.exists():
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read(min(limit, MAX_LOG_CHUNK))
    return LogChunk(
        job_id=job_id,
        replica=replica,
        offset=offset,
        next_offset=offset + len(data),
        data=data.decode("utf-8", errors="replace"),
        finished=JobState(row.state).finished,
    )
