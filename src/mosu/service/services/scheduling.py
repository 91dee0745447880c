"""One scheduling cycle against the store: load (short transaction) → engine (no
transaction) → apply (short transaction, guarded).

The guard: every decision carries the job version the snapshot saw; a decision
whose job changed since (cancelled, already started, finished) is skipped, and
the job row's optimistic lock makes a concurrent change fail the transaction
rather than be overwritten. The next cycle sees the new state. Why a job still
waits is advice, not a decision: only changed reasons are written, by one statement
guarded the same way, and without bumping the version.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mosu.core.api import (
    ACTIVE_STATES,
    CheckpointReport,
    JobLaunch,
    JobState,
    ReplicaLaunch,
    argv_of,
)
from mosu.core.executor import AttemptRecord, ReplicaRecord, ReplicaStarted
from mosu.core.models import GPU_MILLI, Placement, RunningJob
from mosu.core.reasons import PendingReason, StopReason
from mosu.engine.decisions import CycleResult
from mosu.engine.snapshot import ClusterSnapshot

if TYPE_CHECKING:
    from mosu.engine.estimates import HistoryEstimator, StartEstimates

from mosu.service.db.convert import (
    engine_id,
    engine_job,
    engine_node,
    engine_placement,
    engine_tenant,
    history_size,
    indices_of,
    platform_id,
)
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.secret_box import SecretKeyError
from mosu.service.services.jobs import log_path
from mosu.service.services.lifecycle import active_allocations, note, release, transition
from mosu.service.services.secrets import reveal

Wait = tuple[PendingReason | None, str | None, float | None, float | None]
"""Why a pending job waits: (reason, message, likely start, late bound)."""
HISTORY_WINDOW = 500
"""Recent successful runs that teach run times."""


@dataclass(frozen=True)
class LoadedSnapshot:
    snapshot: ClusterSnapshot
    versions: dict[int, int]
    """Job id → the row version the snapshot was built from."""
    reasons: dict[int, Wait]
    """Pending job id → the (reason, message, likely start, late bound) stored when loaded."""


_SNAPSHOT_COLUMNS = (
    JobRow.id,
    JobRow.tenant,
    JobRow.state,
    JobRow.version,
    JobRow.kind,
    JobRow.priority,
    JobRow.replicas,
    JobRow.gpus,
    JobRow.gpu_milli,
    JobRow.gpu_types,
    JobRow.cpu_milli,
    JobRow.mem_mib,
    JobRow.topology,
    JobRow.estimate_s,
    JobRow.checkpoint_every_s,
    JobRow.submitted_at,
    JobRow.started_at,
    JobRow.last_checkpoint_at,
    JobRow.attained_gpu_s,
    JobRow.pending_reason,
    JobRow.pending_message,
    JobRow.estimated_start,
    JobRow.estimated_start_late,
)
"""What a cycle reads of a job: plain rows, not ORM objects (no identity map, no
spec JSON to decode). With thousands queued, loading them as objects was most of
a cycle's cost."""


@dataclass
class Applied:
    started: list[int] = field(default_factory=list)
    preempting: list[int] = field(default_factory=list)
    queue_order: list[int] = field(default_factory=list)
    """Pending job ids in the engine's order (position 1 first)."""
    skipped: int = 0
    reasons: list[tuple[int, Wait]] = field(default_factory=list)
    """Why jobs wait, as written (to the job version the snapshot saw, if still pending):
    the change log leaves these writes out, and the scheduler's kept state takes them
    from here (``LiveSnapshot.note_reasons``)."""


def observe_finished(runs: Iterable[tuple[str, int, float, str]]) -> HistoryEstimator:
    """An estimator taught (tenant, total GPU milli, run seconds, kind) runs, oldest first."""
    from mosu.engine.estimates import HistoryEstimator

    estimator = HistoryEstimator()
    for tenant, milli, run_s, kind in runs:
        estimator.observe(tenant, milli, run_s, kind)
    return estimator


FinishedRun = tuple[float, int, str, int, float, str]
"""(finished at, job id, tenant, total GPU milli, run seconds, kind): one run time."""


def recent_runs(session: Session, window: int = HISTORY_WINDOW) -> list[FinishedRun]:
    """The ``window`` most recent successful runs, newest first: what run-time
    estimates learn from (full reads and the scheduler's kept state alike)."""
    rows = session.execute(
        select(
            JobRow.id,
            JobRow.tenant,
            JobRow.kind,
            JobRow.gpus,
            JobRow.gpu_milli,
            JobRow.replicas,
            JobRow.started_at,
            JobRow.finished_at,
        )
        .where(JobRow.state == JobState.SUCCEEDED.value, JobRow.started_at.is_not(None))
        .order_by(JobRow.finished_at.desc(), JobRow.id.desc())
        .limit(window)
    ).all()
    return [finished_run(r) for r in rows]


def finished_run(row: Any) -> FinishedRun:
    """A succeeded job's row (with ``finished_at``) as one run time."""
    return (
        row.finished_at,
        row.id,
        *history_size(row),
        max(0.0, row.finished_at - row.started_at),
        row.kind,
    )


def estimator_of(runs: Sequence[FinishedRun]) -> HistoryEstimator:
    """An estimator taught ``runs`` (newest first), oldest first."""
    return observe_finished(
        (tenant, milli, run_s, kind) for _at, _id, tenant, milli, run_s, kind in reversed(runs)
    )


def _history_estimator(session: Session, window: int = HISTORY_WINDOW) -> HistoryEstimator:
    """Learn run times from the most recent successful jobs, oldest first."""
    return estimator_of(recent_runs(session, window))


def load_snapshot(
    session: Session,
    *,
    now: float,
    use_history: bool = False,
    estimates: StartEstimates | None = None,
) -> LoadedSnapshot:
    """The engine's input; with ``use_history`` jobs without an estimate plan with one
    from the run times of recent finished jobs (``ClusterSnapshot.history_estimates``).
    With ``estimates`` (the caller's spread and stop grace) start-time estimates read
    the same run times."""
    # Nodes and tenants in the order of their names' code points, whatever the
    # database's collation (``LiveSnapshot`` keeps the same order).
    nodes = tuple(
        sorted((engine_node(n) for n in session.scalars(select(NodeRow))), key=lambda n: n.name)
    )
    quotas: dict[str, list[QuotaRow]] = defaultdict(list)
    for q in session.scalars(select(QuotaRow)):
        quotas[q.tenant].append(q)
    tenants = tuple(
        sorted(
            (engine_tenant(t, quotas[t.name]) for t in session.scalars(select(TenantRow))),
            key=lambda t: t.name,
        )
    )
    rows = session.execute(
        select(*_SNAPSHOT_COLUMNS)
        .where(JobRow.state.in_([JobState.PENDING.value, *[s.value for s in ACTIVE_STATES]]))
        .order_by(JobRow.id)
    ).all()
    allocs: dict[int, list[AllocationRow]] = defaultdict(list)
    for a in session.scalars(select(AllocationRow).where(AllocationRow.released_at.is_(None))):
        allocs[a.job_id].append(a)
    running: list[RunningJob] = []
    pending = []
    attained: dict[str, float] = {}
    versions: dict[int, int] = {}
    reasons: dict[int, Wait] = {}
    history = _history_estimator(session) if use_history or estimates is not None else None
    by_size: dict[tuple[str, int], float | None] = {}
    for row in rows:
        versions[row.id] = row.version
        if history is not None and use_history and row.estimate_s is None:
            key = history_size(row)
            if key not in by_size:
                by_size[key] = history.estimate(*key, None)
        if row.state == JobState.PENDING.value:
            pending.append(engine_job(row))
            reasons[row.id] = (
                row.pending_reason,
                row.pending_message,
                row.estimated_start,
                row.estimated_start_late,
            )
            if row.attained_gpu_s:
                attained[engine_id(row.id)] = row.attained_gpu_s
            continue
        held = allocs.get(row.id, [])
        if not held:
            continue
        started = row.started_at if row.started_at is not None else now
        running.append(
            RunningJob(
                job=engine_job(row),
                placement=engine_placement(held),
                started_s=started,
                last_checkpoint_s=attempt_checkpoint(row.last_checkpoint_at, started),
                attained_gpu_s=row.attained_gpu_s,
            )
        )
    if estimates is not None and history is not None:
        estimates = dataclasses.replace(estimates, runtimes=history)
    snapshot = ClusterSnapshot(
        now=now,
        nodes=nodes,
        tenants=tenants,
        running=tuple(running),
        pending=tuple(pending),
        attained_gpu_s=attained,
        estimates=estimates,
        history_estimates=by_size,
    )
    return LoadedSnapshot(snapshot=snapshot, versions=versions, reasons=reasons)


def attempt_checkpoint(last_checkpoint_at: float | None, started_at: float) -> float | None:
    """A job's last checkpoint if its current attempt (begun at ``started_at``) saved it;
    None when it is from an earlier attempt, or none was reported."""
    if last_checkpoint_at is None or last_checkpoint_at < started_at:
        return None
    return last_checkpoint_at


def store_checkpoints(
    session: Session, reports: dict[int, CheckpointReport], *, now: float
) -> None:
    """Record the checkpoints running attempts reported: each job's ``last_checkpoint_at``,
    for the attempt reported only, never before it started and never after ``now`` (a
    report from the future counts as now). One statement that, like a pending reason,
    does not bump the version: a report is information, and a concurrent cancel or
    decision must not fail for it."""
    values = [
        {"b_id": job_id, "b_attempt": r.attempt, "b_at": min(r.at, now)}
        for job_id, r in reports.items()
        if r.at is not None
    ]
    if not values:
        return
    jobs = JobRow.__table__
    session.connection().execute(
        jobs.update()
        .where(
            jobs.c.id == bindparam("b_id"),
            jobs.c.attempts == bindparam("b_attempt"),
            jobs.c.state.in_([s.value for s in ACTIVE_STATES]),
            jobs.c.started_at <= bindparam("b_at"),
        )
        .values(last_checkpoint_at=bindparam("b_at")),
        values,
    )


def apply_decisions(
    session: Session,
    *,
    loaded: LoadedSnapshot,
    result: CycleResult,
    now: float,
    logs_dir: Path | None = None,
    held: list[tuple[int, Wait]] | None = None,
) -> Applied:
    """Write the cycle's decisions; call inside one transaction. With ``logs_dir`` each
    new allocation names its replica's run directory there (``run_dir_path``); ``held``
    are reasons for jobs kept from the engine (credits)."""
    applied = Applied()
    waits: list[tuple[int, Wait]] = list(held or ())
    # Jobs that change state are loaded (and locked) as objects; jobs left pending
    # are not: their reasons are compared with what the snapshot read and only the
    # changed ones written, by a guarded update (step 3).
    ids = {platform_id(d.job_id) for d in (*result.preemptions, *result.starts)}
    rows = {
        r.id: r
        for r in session.scalars(select(JobRow).where(JobRow.id.in_(sorted(ids))).with_for_update())
    }

    def current(job_id: str, states: tuple[JobState, ...]) -> JobRow | None:
        row = rows.get(platform_id(job_id))
        if row is None or row.version != loaded.versions.get(row.id) or row.state not in states:
            applied.skipped += 1
            return None
        return row

    # 1. Preemptions: ask the victims to stop; they keep their GPUs until they exit.
    for p in result.preemptions:
        row = current(p.job_id, ACTIVE_STATES)
        if row is None or row.stop_reason is not None:
            continue
        row.stop_reason = StopReason.PREEMPT
        row.stop_signalled = False
        beneficiary = f" for job {p.for_job}" if p.for_job else ""
        note(
            session, row, "stop-requested", reason=str(p.reason), message=f"{p.reason}{beneficiary}"
        )
        applied.preempting.append(row.id)
    # 2. Starts: pending → starting with one allocation row per replica. The engine
    # plans starts on capacity its preemptions free, but a victim holds its GPUs until
    # its processes exit (the grace period): such a start waits for a later cycle.
    # Read only when something starts, and only for the nodes the starts are placed on.
    targets = {rp.node for s in result.starts for rp in s.placement}
    free = _free_capacity(session, targets) if targets else None
    for s in result.starts:
        row = current(s.job_id, (JobState.PENDING,))
        if row is None:
            continue
        assert free is not None
        if not free.take(s.placement):
            waits.append(
                (row.id, (PendingReason.WAITING_FOR_PREEMPTED, WAITING_MESSAGE, None, None))
            )
            applied.queue_order.append(row.id)
            continue
        row.attempts += 1
        # The cycle's clock was read before its snapshot; a job submitted in between
        # still never starts before it was submitted.
        started = max(now, row.submitted_at)
        row.started_at = started
        row.pending_reason = row.pending_message = None
        row.estimated_start = row.estimated_start_late = None
        transition(session, row, JobState.STARTING, reason="scheduled", now=started)
        for k, rp in enumerate(s.placement):
            session.add(
                AllocationRow(
                    job_id=row.id,
                    attempt=row.attempts,
                    replica=k,
                    tenant=row.tenant,
                    node=rp.node,
                    gpu_type=free.gpu_types[rp.node],
                    gpu_indices=",".join(str(g) for g in rp.gpu_indices),
                    gpu_milli=rp.gpu_milli,
                    cpu_milli=rp.cpu_milli,
                    mem_mib=rp.mem_mib,
                    allocated_at=started,
                    run_dir=None
                    if logs_dir is None
                    else str(run_dir_path(logs_dir, row.id, row.attempts, k)),
                )
            )
        applied.started.append(row.id)
    # 3. The rest: remember why each job waits. A cycle that explains only some jobs
    # (``ClusterSnapshot.explain`` False) also names jobs waiting for their guarantee,
    # without an estimated start: stored, that would undo the estimate the last full
    # explanation wrote, and the next one would write it again.
    snap = loaded.snapshot
    for d in result.pending:
        if not snap.explain and d.job_id not in snap.estimate_ids:
            continue
        applied.queue_order.append(platform_id(d.job_id))
        eta = None if d.estimated_start_s is None else round(d.estimated_start_s)
        late = None if d.late_start_s is None else round(d.late_start_s)
        waits.append((platform_id(d.job_id), (d.reason, d.message, eta, late)))
    session.flush()
    applied.reasons = _write_reasons(session, loaded, waits)
    return applied


def _write_reasons(
    session: Session,
    loaded: LoadedSnapshot,
    waits: list[tuple[int, Wait]],
) -> list[tuple[int, Wait]]:
    """Store why each job waits, only where it changed since the snapshot, and only to
    the job version the snapshot saw, still pending. The write does not bump the
    version: a reason is advice, and a user's concurrent cancel must not fail for it.
    Returns what it wrote (a job changed meanwhile keeps its row as it is)."""
    written = [
        (job_id, wait)
        for job_id, wait in waits
        if job_id in loaded.reasons and loaded.reasons[job_id] != wait
    ]
    changed = [
        # Parameter names unlike any column's: a key naming a column would be taken as
        # a value to set.
        {
            "b_id": job_id,
            "b_version": loaded.versions[job_id],
            "b_reason": reason,
            "b_message": message,
            "b_eta": eta,
            "b_late": late,
        }
        for job_id, (reason, message, eta, late) in written
    ]
    if not changed:
        return written
    jobs = JobRow.__table__
    session.connection().execute(
        jobs.update()
        .where(
            jobs.c.id == bindparam("b_id"),
            jobs.c.version == bindparam("b_version"),
            jobs.c.state == JobState.PENDING.value,
        )
        .values(
            pending_reason=bindparam("b_reason"),
            pending_message=bindparam("b_message"),
            estimated_start=bindparam("b_eta"),
            estimated_start_late=bindparam("b_late"),
        ),
        changed,
    )
    return written


WAITING_MESSAGE = "capacity chosen for it is still held by preempted jobs that are checkpointing"


@dataclass
class _FreeCapacity:
    """What is really free now: node capacity minus every active allocation, including
    those of jobs that are being stopped."""

    gpu_used: dict[tuple[str, int], int]
    cpu_free: dict[str, int]
    mem_free: dict[str, int]
    gpus: dict[str, int]
    gpu_types: dict[str, str]

    def take(self, placement: Placement) -> bool:
        gpu = dict(self.gpu_used)
        cpu = dict(self.cpu_free)
        mem = dict(self.mem_free)
        for rp in placement:
            if rp.node not in self.gpus:
                return False
            for g in rp.gpu_indices:
                if not 0 <= g < self.gpus[rp.node]:
                    return False
                gpu[(rp.node, g)] = gpu.get((rp.node, g), 0) + rp.gpu_milli
                if gpu[(rp.node, g)] > GPU_MILLI:
                    return False
            cpu[rp.node] -= rp.cpu_milli
            mem[rp.node] -= rp.mem_mib
            if cpu[rp.node] < 0 or mem[rp.node] < 0:
                return False
        self.gpu_used, self.cpu_free, self.mem_free = gpu, cpu, mem
        return True


def _free_capacity(session: Session, names: set[str]) -> _FreeCapacity:
    """What is free on the nodes ``names`` (a node not stored is not there: nothing fits
    on it). Columns, not ORM objects."""
    nodes = NodeRow.__table__.c
    allocs = AllocationRow.__table__.c
    wanted = sorted(names)
    free = _FreeCapacity(gpu_used={}, cpu_free={}, mem_free={}, gpus={}, gpu_types={})
    for n in session.execute(
        select(nodes.name, nodes.gpu_type, nodes.gpus, nodes.cpu_milli, nodes.mem_mib).where(
            nodes.name.in_(wanted)
        )
    ):
        free.cpu_free[n.name] = n.cpu_milli
        free.mem_free[n.name] = n.mem_mib
        free.gpus[n.name] = n.gpus
        free.gpu_types[n.name] = n.gpu_type
    held = select(allocs.node, allocs.gpu_indices, allocs.gpu_milli, allocs.cpu_milli)
    held = held.add_columns(allocs.mem_mib).where(allocs.node.in_(wanted))
    for a in session.execute(held.where(allocs.released_at.is_(None))):
        for g in indices_of(a.gpu_indices):
            free.gpu_used[(a.node, g)] = free.gpu_used.get((a.node, g), 0) + a.gpu_milli
        if a.node in free.cpu_free:
            free.cpu_free[a.node] -= a.cpu_milli
            free.mem_free[a.node] -= a.mem_mib
    return free


def run_dir_path(logs_dir: Path, job_id: int, attempt: int, replica: int) -> Path:
    """Where a replica's supervisor keeps its lock, handle and exit record: in the job's
    directory, beside its logs."""
    return logs_dir / str(job_id) / "run" / f"{attempt}.{replica}"


def launch_spec(session: Session, *, job_id: int, logs_dir: Path) -> JobLaunch | None:
    """What the executor needs to start a job, its secrets opened into ``env``; None if the
    job is no longer starting, or if a secret it names is gone (the job then fails)."""
    row = session.get(JobRow, job_id)
    if row is None or row.state != JobState.STARTING.value:
        return None
    spec = row.spec
    try:
        opened = reveal(session, tenant=row.tenant, names=spec.get("secrets") or [])
    except SecretKeyError as exc:
        release(session, row)
        row.message = f"could not start: {exc.message}"
        transition(session, row, JobState.FAILED, reason="launch", message=row.message)
        session.commit()
        return None
    allocations = active_allocations(session, row.id)
    vendors: dict[str, str] = {
        name: vendor
        for name, vendor in session.execute(
            select(NodeRow.name, NodeRow.vendor).where(
                NodeRow.name.in_({a.node for a in allocations})
            )
        )
    }
    replicas = [
        ReplicaLaunch(
            replica=a.replica,
            node=a.node,
            gpu_indices=indices_of(a.gpu_indices),
            gpu_milli=a.gpu_milli,
            vendor=vendors.get(a.node, "nvidia"),
            log_path=str(log_path(logs_dir, row.id, a.replica)),
            run_dir=a.run_dir or str(run_dir_path(logs_dir, row.id, row.attempts, a.replica)),
        )
        for a in allocations
    ]
    return JobLaunch(
        job_id=row.id,
        attempt=row.attempts,
        tenant=row.tenant,
        argv=argv_of(spec["command"]),
        env={**(spec.get("env") or {}), **opened},
        workdir=spec.get("workdir"),
        replicas=replicas,
        estimate_s=row.estimate_s,
    )


def mark_running(
    session: Session,
    *,
    job_id: int,
    attempt: int,
    started: dict[int, ReplicaStarted],
    reason: str = "launched",
) -> None:
    """Record what runs (pids and supervisor handles); a starting job becomes running."""
    row = session.get(JobRow, job_id)
    if row is None or row.state not in ACTIVE_STATES or row.attempts != attempt:
        return
    for a in active_allocations(session, job_id):
        if a.replica in started:
            a.pid = started[a.replica].pid
            a.supervisor = started[a.replica].supervisor
    pids = {k: v.pid for k, v in started.items()}
    if row.state == JobState.STARTING.value:
        transition(session, row, JobState.RUNNING, reason=reason, message=_pids_text(pids))
    elif reason == "adopted":  # a running attempt watched by a new server from now on
        note(session, row, "adopted", reason="restart", message=_pids_text(pids))


def _pids_text(pids: dict[int, int]) -> str:
    return "pids " + " ".join(f"{k}:{v}" for k, v in sorted(pids.items()))


def active_attempts(session: Session, *, logs_dir: Path) -> list[AttemptRecord]:
    """Every starting or running attempt with what the store knows of its replicas, for
    a new server to adopt."""
    rows = session.execute(
        select(JobRow.id, JobRow.attempts, JobRow.tenant)
        .where(JobRow.state.in_(list(ACTIVE_STATES)))
        .order_by(JobRow.id)
    ).all()
    out = []
    for job_id, attempt, tenant in rows:
        replicas = [
            ReplicaRecord(
                replica=a.replica,
                node=a.node,
                run_dir=a.run_dir,
                supervisor=a.supervisor,
                pid=a.pid,
                log_path=str(log_path(logs_dir, job_id, a.replica)),
            )
            for a in active_allocations(session, job_id)
        ]
        out.append(AttemptRecord(job_id=job_id, attempt=attempt, tenant=tenant, replicas=replicas))
    return out
