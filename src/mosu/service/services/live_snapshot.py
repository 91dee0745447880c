"""The scheduler's state kept between cycles: nodes, tenants with their quotas, the
queue, running jobs with their allocations and the recent finished jobs that teach
run times, in memory, brought up to date each cycle from the change log
(``db/change_log.py``) instead of re-read.

A cycle reads the changes committed since the last one and reloads only the rows
they name (a job with its open allocations, a node, a tenant with its quotas), so
its cost grows with what changed, not with the queue or the history. Why jobs wait,
which the scheduler alone writes, is not in the log: the loop hands this state what
its apply wrote (``note_reasons``). Everything is
read again at the first load, after ``reset`` (a new leader), when the log has a gap
or a change it cannot apply, when the store lacks the log's triggers (then every
cycle), and every ``resync_s`` as a safety net: that reload is compared with the
state it replaces and a difference is logged as an error.

``load`` returns what ``scheduling.load_snapshot`` returns for the same store, so the
decisions and everything after them do not know which one ran.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mosu.core.api import ACTIVE_STATES, JobState
from mosu.core.models import Job, Node, RunningJob, Tenant
from mosu.engine.estimates import HistoryEstimator
from mosu.engine.snapshot import ClusterSnapshot
from mosu.service.db.change_log import Change, ChangeLog, Position
from mosu.service.db.convert import (
    engine_id,
    engine_job,
    engine_node,
    engine_placement,
    engine_tenant,
    history_size,
)
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services.scheduling import (
    _SNAPSHOT_COLUMNS,
    HISTORY_WINDOW,
    FinishedRun,
    LoadedSnapshot,
    Wait,
    attempt_checkpoint,
    estimator_of,
    finished_run,
    recent_runs,
)

if TYPE_CHECKING:
    from sqlalchemy import Row

    from mosu.engine.estimates import StartEstimates

log = logging.getLogger("mosu.scheduler")

RESYNC_S = 600.0
"""How often the whole state is read again anyway (and compared)."""
CHUNK = 900
"""Keys per ``IN`` list (SQLite allows a few thousand parameters a statement)."""

_PENDING = JobState.PENDING.value
_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)
_SUCCEEDED = JobState.SUCCEEDED.value
_JOB_COLUMNS = (*_SNAPSHOT_COLUMNS, JobRow.finished_at)
_ALLOC_COLUMNS = (
    AllocationRow.job_id,
    AllocationRow.replica,
    AllocationRow.node,
    AllocationRow.gpu_indices,
    AllocationRow.gpu_milli,
    AllocationRow.cpu_milli,
    AllocationRow.mem_mib,
)


class _CannotApply(Exception):
    """A change this state does not know how to apply: reload everything."""


def _chunks(keys: Iterable[Any]) -> Iterator[list[Any]]:
    items = sorted(keys)
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


class LiveSnapshot:
    def __init__(
        self,
        *,
        use_history: bool = False,
        resync_s: float = RESYNC_S,
        monotonic: Callable[[], float] = time.monotonic,
        history_window: int = HISTORY_WINDOW,
    ) -> None:
        self.use_history = use_history
        self.resync_s = resync_s
        self._monotonic = monotonic
        self._window = history_window
        self._log: ChangeLog | None = None
        self._position: Position | None = None
        self._synced_at = -float("inf")
        self.trusted: bool | None = None
        """Whether the store has every trigger of the change log (checked once)."""
        self.full_loads = 0
        """Times the whole state was read (first load, gaps, resyncs)."""
        self.diverged = 0
        """Resyncs that found the kept state different from the store: a write the log
        missed (a bug), repaired by the reload."""
        self.last_changes = 0
        """Keys the last load applied (0 after a full read)."""
        self._clear()

    # ------------------------------------------------------------ public

    def reset(self) -> None:
        """Read everything at the next load (a new leader; the state may be stale), and
        check the store's triggers again."""
        self._position = None
        self.trusted = None

    def load(
        self,
        session: Session,
        *,
        now: float,
        estimates: StartEstimates | None = None,
        explain: bool = True,
    ) -> LoadedSnapshot:
        """The engine's input now, as ``load_snapshot(session, now=now,
        use_history=self.use_history, estimates=estimates)`` would read it. Call first in
        a fresh session (on PostgreSQL it makes the session's transaction one snapshot).
        ``explain`` False asks the engine for the reasons of the jobs that have none yet
        only (``ClusterSnapshot.explain`` and ``estimate_ids``)."""
        changelog = self._changelog(session)
        changelog.begin(session)
        try:
            if self.trusted is None:
                self.trusted = changelog.installed(session)
                if not self.trusted:
                    log.warning("the store lacks the change log's triggers: every cycle reads all")
            if not self.trusted or self._position is None:
                self._full(session, changelog)
                return self._produce(now, estimates, explain)
            read = changelog.read(session, self._position)
            if read is None:
                log.warning("the change log has a gap; reading the whole state")
                self._full(session, changelog)
                return self._produce(now, estimates, explain)
            position, changes = read
            try:
                self._apply(session, changes)
            except _CannotApply as exc:
                log.warning("cannot apply a change (%s); reading the whole state", exc)
                self._full(session, changelog)
                return self._produce(now, estimates, explain)
            self._position = position
            self.last_changes = len(changes)
            if self._monotonic() - self._synced_at >= self.resync_s:
                return self._resync(session, changelog, now, estimates, explain)
            return self._produce(now, estimates, explain)
        except BaseException:
            self._position = None  # half applied: start over next time
            raise

    def note_reasons(self, written: Iterable[tuple[int, Wait]]) -> None:
        """Take the reasons a committed apply wrote (``Applied.reasons``): the change log
        leaves those writes out. A job changed since this state loaded it was not
        written; its change is in the log and its next read overwrites this."""
        for job_id, wait in written:
            if job_id in self._reasons:
                self._reasons[job_id] = wait
                if wait[0] is not None:
                    self._unexplained.discard(job_id)

    @property
    def pending_count(self) -> int:
        """Jobs pending as of the last load."""
        return len(self._pending)

    def prune(self, sessions: sessionmaker[Session]) -> int:
        """Delete the change rows this state has consumed; the number deleted."""
        if self._position is None or self._log is None or not self.trusted:
            return 0
        with sessions.begin() as s:
            return self._log.prune(s, self._position)

    # ------------------------------------------------------------ reading

    def _changelog(self, session: Session) -> ChangeLog:
        if self._log is None:
            self._log = ChangeLog(session.get_bind().dialect.name)
        return self._log

    def _clear(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._tenants: dict[str, Tenant] = {}
        self._rows: dict[int, Row[Any]] = {}
        """Pending and active jobs' rows (the snapshot's columns)."""
        self._allocs: dict[int, list[Row[Any]]] = {}
        self._pending: dict[int, Job] = {}
        self._pending_order: list[int] = []
        self._running: dict[int, RunningJob] = {}
        self._running_order: list[int] = []
        self._unstarted: set[int] = set()
        """Active jobs without a start time: the snapshot gives them ``now``."""
        self._versions: dict[int, int] = {}
        self._reasons: dict[int, Wait] = {}
        self._unexplained: set[int] = set()
        """Pending jobs without a stored reason yet: a cycle that explains only some jobs
        explains these."""
        self._attained: dict[str, float] = {}
        self._by_size: dict[tuple[str, int], set[int]] = defaultdict(set)
        """(tenant, total GPU milli) → jobs without an estimate (history gives theirs)."""
        self._size_estimates: dict[tuple[str, int], float | None] = {}
        self._history: list[FinishedRun] = []
        """The most recent successful runs, newest first (``HISTORY_WINDOW`` of them)."""
        self._history_ids: set[int] = set()
        self._history_stale = False
        self._history_version = 0
        self._estimator: HistoryEstimator | None = None
        self._nodes_t: tuple[Node, ...] | None = None
        self._tenants_t: tuple[Tenant, ...] | None = None
        self._pending_t: tuple[Job, ...] | None = None
        self._running_t: tuple[RunningJob, ...] | None = None

    def _full(self, session: Session, changelog: ChangeLog) -> None:
        # The position first: whatever commits while the rest is read is read again.
        position = changelog.position(session)
        self._clear()
        self._nodes = {r.name: engine_node(r) for r in session.scalars(select(NodeRow))}
        self._tenants = self._read_tenants(session, None)
        self._read_history(session)
        allocs: dict[int, list[Row[Any]]] = defaultdict(list)
        for a in session.execute(
            select(*_ALLOC_COLUMNS).where(AllocationRow.released_at.is_(None))
        ):
            allocs[a.job_id].append(a)
        rows = session.execute(
            select(*_JOB_COLUMNS).where(JobRow.state.in_([_PENDING, *_ACTIVE])).order_by(JobRow.id)
        ).all()
        for row in rows:
            self._add(row, allocs.get(row.id, []))
        self._position = position
        self._synced_at = self._monotonic()
        self.full_loads += 1
        self.last_changes = 0

    def _read_tenants(self, session: Session, names: list[str] | None) -> dict[str, Tenant]:
        quotas: dict[str, list[QuotaRow]] = defaultdict(list)
        tenants = select(TenantRow)
        quota_rows = select(QuotaRow)
        if names is not None:
            tenants = tenants.where(TenantRow.name.in_(names))
            quota_rows = quota_rows.where(QuotaRow.tenant.in_(names))
        for q in session.scalars(quota_rows):
            quotas[q.tenant].append(q)
        return {t.name: engine_tenant(t, quotas[t.name]) for t in session.scalars(tenants)}

    def _read_history(self, session: Session) -> None:
        self._history = recent_runs(session, self._window)
        self._history_ids = {f[1] for f in self._history}
        self._history_stale = False
        self._history_version += 1
        self._estimator = None

    # ------------------------------------------------------------ changes

    def _apply(self, session: Session, changes: set[Change]) -> None:
        jobs: set[int] = set()
        nodes: set[str] = set()
        tenants: set[str] = set()
        for kind, key in changes:
            if kind == "job":
                try:
                    jobs.add(int(key))
                except ValueError:
                    raise _CannotApply(f"job key {key!r}") from None
            elif kind == "node":
                nodes.add(key)
            elif kind == "tenant":
                tenants.add(key)
            else:
                raise _CannotApply(f"kind {kind!r}")
        for chunk in _chunks(nodes):
            found = {
                r.name: r for r in session.scalars(select(NodeRow).where(NodeRow.name.in_(chunk)))
            }
            for name in chunk:
                row = found.get(name)
                if row is None:
                    self._nodes.pop(name, None)
                else:
                    self._nodes[name] = engine_node(row)
            self._nodes_t = None
        for chunk in _chunks(tenants):
            read = self._read_tenants(session, chunk)
            for name in chunk:
                if name in read:
                    self._tenants[name] = read[name]
                else:
                    self._tenants.pop(name, None)
            self._tenants_t = None
        history_version = self._history_version
        for chunk in _chunks(jobs):
            rows = {
                r.id: r for r in session.execute(select(*_JOB_COLUMNS).where(JobRow.id.in_(chunk)))
            }
            allocs: dict[int, list[Row[Any]]] = defaultdict(list)
            for a in session.execute(
                select(*_ALLOC_COLUMNS).where(
                    AllocationRow.job_id.in_(chunk), AllocationRow.released_at.is_(None)
                )
            ):
                allocs[a.job_id].append(a)
            for job_id in chunk:
                self._drop(job_id)
                row = rows.get(job_id)
                if row is None:
                    if job_id in self._history_ids:
                        self._history_stale = True
                    continue
                if row.state == _PENDING or row.state in _ACTIVE:
                    self._add(row, allocs.get(job_id, []))
                if row.state == _SUCCEEDED and row.started_at is not None:
                    self._observe(row)
                elif job_id in self._history_ids:
                    self._history_stale = True  # left success: the window must be read
        if self._history_stale:
            self._read_history(session)  # bumps the version
        if self._history_version != history_version:
            self._estimator = None
            self._reestimate()

    def _observe(self, row: Row[Any]) -> None:
        """Keep a successful run among the most recent ``window``, newest first."""
        if row.id in self._history_ids or row.finished_at is None:
            return
        entry = finished_run(row)
        order = (-entry[0], -entry[1])
        keys = [(-f[0], -f[1]) for f in self._history]
        at = bisect.bisect_left(keys, order)
        if at >= self._window:
            return
        self._history.insert(at, entry)
        self._history_ids.add(entry[1])
        self._history_version += 1
        while len(self._history) > self._window:
            self._history_ids.discard(self._history.pop()[1])

    def _history_estimator(self) -> HistoryEstimator:
        if self._estimator is None:
            self._estimator = estimator_of(self._history)
        return self._estimator

    def _reestimate(self) -> None:
        """History changed: the estimate of each size of jobs without their own."""
        if not self.use_history:
            return
        estimator = self._history_estimator()
        for key in self._by_size:
            self._size_estimates[key] = estimator.estimate(*key, None)

    # ------------------------------------------------------------ one job

    def _add(self, row: Row[Any], allocs: Sequence[Row[Any]]) -> None:
        job_id = row.id
        eid = engine_id(job_id)
        self._rows[job_id] = row
        self._versions[job_id] = row.version
        if self.use_history and row.estimate_s is None:
            key = history_size(row)
            self._by_size[key].add(job_id)
            if key not in self._size_estimates:
                self._size_estimates[key] = self._history_estimator().estimate(*key, None)
        if row.state == _PENDING:
            self._pending[job_id] = engine_job(row)
            bisect.insort(self._pending_order, job_id)
            self._pending_t = None
            self._reasons[job_id] = (
                row.pending_reason,
                row.pending_message,
                row.estimated_start,
                row.estimated_start_late,
            )
            if row.pending_reason is None:
                self._unexplained.add(job_id)
            if row.attained_gpu_s:
                self._attained[eid] = row.attained_gpu_s
            return
        if not allocs:
            return
        self._allocs[job_id] = list(allocs)
        if row.started_at is None:
            self._unstarted.add(job_id)
        self._running[job_id] = RunningJob(
            job=engine_job(row),
            placement=engine_placement(allocs),
            started_s=row.started_at if row.started_at is not None else 0.0,
            last_checkpoint_s=(
                None
                if row.started_at is None
                else attempt_checkpoint(row.last_checkpoint_at, row.started_at)
            ),
            attained_gpu_s=row.attained_gpu_s,
        )
        bisect.insort(self._running_order, job_id)
        self._running_t = None

    def _drop(self, job_id: int) -> None:
        row = self._rows.pop(job_id, None)
        if row is None:
            return
        eid = engine_id(job_id)
        self._versions.pop(job_id, None)
        self._reasons.pop(job_id, None)
        self._unexplained.discard(job_id)
        self._attained.pop(eid, None)
        self._allocs.pop(job_id, None)
        self._unstarted.discard(job_id)
        if row.estimate_s is None:
            key = history_size(row)
            ids = self._by_size.get(key)
            if ids is not None:
                ids.discard(job_id)
                if not ids:
                    del self._by_size[key]
                    self._size_estimates.pop(key, None)
        if self._pending.pop(job_id, None) is not None:
            _remove(self._pending_order, job_id)
            self._pending_t = None
        if self._running.pop(job_id, None) is not None:
            _remove(self._running_order, job_id)
            self._running_t = None

    # ------------------------------------------------------------ output

    def _produce(
        self, now: float, estimates: StartEstimates | None, explain: bool = True
    ) -> LoadedSnapshot:
        if self._nodes_t is None:
            self._nodes_t = tuple(self._nodes[k] for k in sorted(self._nodes))
        if self._tenants_t is None:
            self._tenants_t = tuple(self._tenants[k] for k in sorted(self._tenants))
        if self._pending_t is None:
            self._pending_t = tuple(map(self._pending.__getitem__, self._pending_order))
        if self._running_t is None:
            self._running_t = tuple(map(self._running.__getitem__, self._running_order))
        running = self._running_t
        if self._unstarted:
            running = tuple(
                dataclasses.replace(
                    r,
                    started_s=now,
                    last_checkpoint_s=attempt_checkpoint(
                        self._rows[int(r.job.id)].last_checkpoint_at, now
                    ),
                )
                if int(r.job.id) in self._unstarted
                else r
                for r in running
            )
        if estimates is not None:
            estimates = dataclasses.replace(estimates, runtimes=self._history_estimator())
        snapshot = ClusterSnapshot(
            now=now,
            nodes=self._nodes_t,
            tenants=self._tenants_t,
            running=running,
            pending=self._pending_t,
            attained_gpu_s=dict(self._attained),
            estimates=estimates,
            explain=explain,
            estimate_ids=frozenset() if explain else frozenset(map(engine_id, self._unexplained)),
            history_estimates=dict(self._size_estimates),
        )
        return LoadedSnapshot(
            snapshot=snapshot, versions=dict(self._versions), reasons=dict(self._reasons)
        )

    def _resync(
        self,
        session: Session,
        changelog: ChangeLog,
        now: float,
        estimates: StartEstimates | None,
        explain: bool,
    ) -> LoadedSnapshot:
        """Read everything again and say whether the kept state had drifted."""
        kept, position = self._produce(now, estimates, explain), self._position
        self._full(session, changelog)
        fresh = self._produce(now, estimates, explain)
        # Only a reload of the same moment can be compared (on SQLite a write may
        # commit between the two reads).
        if position == self._position:
            differs = describe_difference(kept, fresh)
            if differs:
                self.diverged += 1
                log.error("the scheduler's kept state differed from the store: %s", differs)
        return fresh


def _remove(order: list[int], job_id: int) -> None:
    at = bisect.bisect_left(order, job_id)
    if at < len(order) and order[at] == job_id:
        del order[at]


def estimator_state(estimator: HistoryEstimator | None) -> Any:
    """What a history estimator has learnt (to compare two of them)."""
    if estimator is None:
        return None
    return {
        name: value
        for name, value in vars(estimator).items()
        if name != "_history_of"  # a cache of reads, not what was learnt
    }


def describe_difference(a: LoadedSnapshot, b: LoadedSnapshot) -> str:
    """Empty if the two loads give the engine and the apply the same input; else which
    parts differ."""
    parts = []
    sa, sb = a.snapshot, b.snapshot
    names = (
        "now",
        "nodes",
        "tenants",
        "running",
        "pending",
        "attained_gpu_s",
        "estimate_ids",
        "history_estimates",
    )
    for name in names:
        if getattr(sa, name) != getattr(sb, name):
            parts.append(name)
    if a.versions != b.versions:
        parts.append("versions")
    if a.reasons != b.reasons:
        parts.append("reasons")
    ea, eb = sa.estimates, sb.estimates
    if (ea is None) != (eb is None):
        parts.append("estimates")
    elif (
        ea is not None
        and eb is not None
        and estimator_state(ea.runtimes) != estimator_state(eb.runtimes)
    ):
        parts.append("estimates.runtimes")
    return ", ".join(parts)
