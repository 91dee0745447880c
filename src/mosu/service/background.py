"""The scheduling loop: wake on submit, exit and a periodic tick; run one cycle of the
engine against the store; hand its decisions to the executor.

Runs in one thread that alone talks to the executor, so the executor needs no
locking. API handlers only write the store and call ``wake()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from mosu.core.api import (
    ACTIVE_STATES,
    DEFAULT_CHECKPOINT_GRACE_S,
    CheckpointReport,
    JobExit,
    JobLaunch,
    JobState,
)
from mosu.core.executor import (
    Executor,
    LaunchError,
    ReplicaStarted,
    ReportsCheckpoints,
    checkpoint_source,
    node_source,
)
from mosu.core.reasons import StopReason
from mosu.engine.cycle import schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.estimates import StartEstimates
from mosu.engine.snapshot import ClusterSnapshot
from mosu.service.db.convert import platform_id
from mosu.service.db.rows import JobRow
from mosu.service.leader import LeaderLease, LeadershipLost
from mosu.service.scheduler_link import StatePublisher
from mosu.service.services.credits_policy import gate
from mosu.service.services.credits_policy import housekeeping as credits_housekeeping
from mosu.service.services.lifecycle import finish, note, release, transition
from mosu.service.services.live_snapshot import LiveSnapshot
from mosu.service.services.nodes import sync_cluster_nodes
from mosu.service.services.scheduling import (
    active_attempts,
    apply_decisions,
    launch_spec,
    mark_running,
    store_checkpoints,
)

log = logging.getLogger("mosu.scheduler")

LEASE_CHECK_S = 2.0
"""How often a leader confirms its lease with the database."""
LEASE_RETRY_S = 2.0
"""How often a standby tries to take the lease (takeover well within 10 s)."""
MARK_EVERY_S = 0.1
"""Starts of one cycle recorded together at most this long after the first of them."""
REST_SHARE = 0.5
"""A requested cycle waits after the last one for this share of what that one cost: the
loop decides at most two thirds of the time under a stream of submissions, and a job
submitted just after a cycle began is decided by the one that begins 1.5 cycle lengths
later (2 when the rest was as long as the cycle)."""
MAX_REST_S = 0.5
"""The longest a requested cycle waits after the last one (a slow first cycle, still
importing and warming up, must not delay the next start by as long)."""
CHECKPOINTS_EVERY_S = 1.0
"""How often the executor's checkpoint reports are read (a supervisor looks at a
replica's file about as often)."""
PRUNE_EVERY_S = 60.0
"""How often the change rows the scheduler's state has consumed are deleted."""
EXPLAIN_EVERY_S = 2.0
"""With a deep queue, how often a cycle explains every pending job (its reason, likely
start and queue position). Explaining is a step per queued job, in the engine and in
the comparison with what is stored, as much as deciding costs with tens of thousands
queued; cycles in between decide for every job and explain the jobs that have no reason
yet. Kueue refreshes its pending-workloads view on an interval too."""
EXPLAIN_ALL_UP_TO = 2_000
"""Queues no longer than this are explained every cycle (a few milliseconds)."""


class SchedulerLoop:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        executor: Executor,
        profile: Any,
        logs_dir: Path,
        grace_s: float,
        tick_s: float,
        poll_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        meter_s: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._executor = executor
        self._profile = profile
        self._logs_dir = logs_dir
        self._grace_s = grace_s
        self._tick_s = tick_s
        self._poll_s = poll_s
        self._clock = clock
        self.monotonic = monotonic
        """The pacing clock (housekeeping at most once a poll interval, lease checks);
        injectable so that a test decides when an interval has passed, not the machine."""
        # Profiles that plan with history-based estimates say so; the plain one does not.
        self._use_history = str(getattr(profile, "estimator", "")) == "history"
        self.start_estimates = StartEstimates(stop_grace_s=grace_s)
        """What start-time estimates read besides the store: the stop grace, and how far
        earlier plans fell from real starts (learnt while this server schedules)."""
        self._plans: dict[int, tuple[str, str, float, float, int]] = {}
        """Pending job id -> (basis, reason, planned wait, when planned, GPU milli) of its
        first estimate, fed back to the spread when it starts."""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cycle = 0.0
        self._cycle_requested = False
        self._last_cycle_end = 0.0
        self._last_cycle_cost = 0.0
        self._last_housekeeping = -math.inf
        self._last_explained = -math.inf
        self.queue_positions: dict[int, int] = {}
        """Pending job id → 1-based position in the order of the last cycle that
        explained every job."""
        self.cycles = 0
        self.on_cycle: Callable[[float], None] = lambda _seconds: None
        """Told each applied cycle's deciding time (metrics)."""
        self.after_cycle: Callable[[], None] = lambda: None
        """Told when a cycle is done, launches included (the scheduler process paces
        its garbage collection by it: ``gc_pacing``)."""
        self.on_phases: Callable[[dict[str, float]], None] = lambda _phases: None
        """Told the seconds each phase of a completed cycle took: load (the snapshot),
        engine, apply (the decisions, in one transaction), launch (starts and stop
        signals)."""
        self.lease: LeaderLease | None = None
        """Set before ``start`` when several servers share the store: only its holder
        schedules, and every apply is fenced by it (see ``mosu.service.leader``)."""
        self.leading = False
        self._last_lease_check = 0.0
        self._last_node_sync = -float("inf")
        self._meter_s = meter_s
        self._last_meter = -math.inf
        self.live = LiveSnapshot(use_history=self._use_history, monotonic=lambda: self.monotonic())
        """Nodes, tenants, the queue and running jobs kept between cycles and brought up
        to date from the store's change log (a new leader reads everything again)."""
        self._last_prune = -math.inf
        self.credit_reserved: dict[str, int] = {}
        """Tenant → micro-credits its running jobs reserve, as of the last cycle."""
        self.on_credit_alerts: Callable[[list[Any]], None] = lambda _alerts: None
        """Told the credit threshold alerts of each metering, after its commit."""
        self.on_metered: Callable[[float], None] = lambda _seconds: None
        """Told each metering's cost (metrics, benchmarks)."""
        self._checkpoints: dict[int, CheckpointReport] = {}
        """Job id → its attempt's checkpoint reports, as last read from the executor."""
        self._stored_checkpoints: dict[int, tuple[int, float]] = {}
        """Job id → (attempt, time) of the report last written to the store."""
        self._last_checkpoints = -math.inf
        self.publisher: StatePublisher | None = None
        """Set in a scheduler process of its own: what the API processes read of this
        loop (queue order, reserved credits, the leader's heartbeat) goes to the store."""

    # ------------------------------------------------------------ lifecycle

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._lead()
        self._thread = threading.Thread(target=self._run, name="mosu-scheduler", daemon=True)
        self._thread.start()

    def _lead(self) -> bool:
        """Hold the lease (when there is one); True while this loop may schedule.

        A new leader first adopts what the previous one left running. A leader that finds
        itself deposed stops watching its replicas (they keep running; the new leader
        adopts them) and stands by.
        """
        if self.lease is None:
            if not self.leading:
                self.leading = True
                self.live.reset()
                self.reconcile()
            self._publish(lambda p: p.heartbeat())
            return True
        now = self.monotonic()
        if self.leading and now - self._last_lease_check < LEASE_CHECK_S:
            return True
        self._last_lease_check = now
        if self.leading:
            if self.lease.check():
                self._publish(lambda p: p.heartbeat())
                return True
            log.error("lost the scheduler lease; leaving running work to the new leader")
            self.leading = False
            if self.publisher is not None:
                self.publisher.forget()
            self._executor.detach()
            return False
        if not self.lease.acquire():
            return False
        self.leading = True
        self.live.reset()  # another leader ran meanwhile
        self._publish(lambda p: p.heartbeat(force=True))
        # Said once the heartbeat is stored, so the API's view catches up within its cache.
        log.info("acquired the scheduler lease")
        self.reconcile()
        return True

    def _publish(self, write: Callable[[StatePublisher], None]) -> None:
        """Hand ``write`` the publisher, if this loop has one; a store hiccup here costs
        the API a stale view for a moment, never the loop."""
        if self.publisher is None:
            return
        try:
            write(self.publisher)
        except Exception as exc:
            log.warning("could not publish the scheduler's state: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the loop. Running replicas are left alone: their supervisors outlive this
        server and the next one adopts them (drain a node to stop its work first)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.leading:
            self.handle_exits()
            self._executor.detach()
            self.leading = False
        if self.lease is not None:
            self.lease.release()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self._wait_s())
            # Clear only a wake seen set: one arriving as the wait times out is kept for
            # the next turn instead of being cleared unseen (it would wait for the tick).
            woken = self._wake.is_set()
            if woken:
                self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if not self._lead():
                    self._stopping.wait(LEASE_RETRY_S)
                    continue
                self.run_once(force_cycle=woken, throttle=True)
            except Exception:  # the loop must outlive any one bad cycle
                log.exception("scheduling iteration failed; retrying")
                time.sleep(self._poll_s)

    def _wait_s(self) -> float:
        """How long the loop may sleep: a poll interval, or less when a requested cycle
        only waits for its rest after the last one (the wake that asked for it was
        already taken)."""
        if not self._cycle_requested:
            return self._poll_s
        rest = self._rest_s()
        left = self._last_cycle_end + rest - self._clock()
        return max(0.0, min(self._poll_s, left))

    def _rest_s(self) -> float:
        return min(self._last_cycle_cost * REST_SHARE, MAX_REST_S)

    # ------------------------------------------------------------ one iteration

    def run_once(self, *, force_cycle: bool = True, throttle: bool = False) -> None:
        """One iteration. With ``throttle`` (the loop thread), a requested cycle waits
        until ``REST_SHARE`` of what the last one took has passed since it (at most
        ``MAX_REST_S``), so a long cycle (a deep queue) leaves the API time to answer;
        requests made meanwhile are coalesced into that next cycle. With ``throttle``
        the housekeeping (exits, max runtime, stop signals, node sync) also runs at most
        once a poll interval: each submission wakes the loop, and under a burst of them
        it would otherwise query the store in a tight loop, taking the interpreter
        from the API for nothing."""
        if force_cycle:
            self._cycle_requested = True
        paced = self.monotonic()
        if not throttle or paced - self._last_housekeeping >= self._poll_s:
            self._last_housekeeping = paced
            self.sync_nodes()
            self.record_checkpoints()
            if self.handle_exits():
                self._cycle_requested = True
            self.enforce_max_runtime()
            self.meter_credits()
            self.signal_stops()
            self.prune_changes()
        now = self._clock()
        rest = self._rest_s()
        rested = not throttle or now - self._last_cycle_end >= rest
        if (self._cycle_requested and rested) or now - self._last_cycle >= self._tick_s:
            self._cycle_requested = False
            self.cycle()

    def sync_nodes(self) -> None:
        """Mirror the nodes of an executor that discovers them (Ray) into the store, at
        most once a tick. A node that went away is ``down`` and its jobs are stopped and
        requeued; one that came back is ``ready`` again (a drain is kept)."""
        source = node_source(self._executor)
        if source is None:
            return
        now = self._clock()
        if now - self._last_node_sync < self._tick_s:
            return
        self._last_node_sync = now
        found = source.cluster_nodes()
        with self._sessions.begin() as s:
            changed = sync_cluster_nodes(s, found)
        if changed:
            self.signal_stops()
            self.wake()

    def reconcile(self) -> None:
        """Adopt what a previous server left running (the restart rule): live replicas are
        watched again with the same attempt and pids, exits that happened meanwhile are
        reported by the executor's next poll and recorded once, and a replica whose
        supervisor died without an exit record is reported lost, so its job is requeued.
        Runs before the first cycle, so nothing new starts before everything old is known."""
        with self._sessions() as s:
            attempts = active_attempts(s, logs_dir=self._logs_dir)
        found = self._executor.adopt(attempts)
        for rec in attempts:
            started = found.running.get(rec.job_id)
            if not started:
                continue
            for _ in range(3):
                try:
                    with self._sessions.begin() as s:
                        mark_running(
                            s,
                            job_id=rec.job_id,
                            attempt=rec.attempt,
                            started=started,
                            reason="adopted",
                        )
                    break
                except StaleDataError:
                    continue
        if attempts:
            log.info(
                "adopted %d running replicas of %d jobs left by a previous server",
                sum(len(v) for v in found.running.values()),
                len(attempts),
            )
        self.handle_exits()
        # An attempt whose start the previous server never began is begun now, as is.
        for job_id in found.unstarted:
            self._launch(job_id)

    def record_checkpoints(self, *, force: bool = False) -> None:
        """Read the checkpoints running attempts reported (at most once a
        ``CHECKPOINTS_EVERY_S``) and store the new ones."""
        source = checkpoint_source(self._executor)
        if source is None:
            return
        paced = self.monotonic()
        if not force and paced - self._last_checkpoints < CHECKPOINTS_EVERY_S:
            return
        self._last_checkpoints = paced
        reports = source.checkpoints()
        self._checkpoints = reports
        seen = {j: (r.attempt, r.at) for j, r in reports.items() if r.at is not None}
        new = {j: reports[j] for j, key in seen.items() if self._stored_checkpoints.get(j) != key}
        if new:
            with self._sessions.begin() as s:
                store_checkpoints(s, new, now=self._clock())
        self._stored_checkpoints = seen

    def _exit_checkpoint(self, s: Session, row: JobRow, ex: JobExit) -> None:
        """What an ending attempt last reported of its checkpoints: stored before its end
        is (a preemption's refund reads it), and the answer to a request still waiting."""
        report = ex.checkpoint
        if report is None or report.attempt != row.attempts:
            return
        self._checkpoints.pop(row.id, None)
        at = None if report.at is None else min(report.at, self._clock())
        if at is not None and row.started_at is not None and at >= row.started_at:
            row.last_checkpoint_at = at
        if row.checkpoint_requested_at is not None and not row.stop_signalled:
            waited = max(0.0, self._clock() - row.checkpoint_requested_at)
            if report.answered:
                text = f"checkpoint reported within {waited:.0f} s of the request; it ended"
                note(s, row, "checkpointed", reason="preempt", message=text)
            else:
                text = "ended before reporting the checkpoint it was asked for"
                note(s, row, "checkpoint-missed", reason="preempt", message=text)

    def handle_exits(self) -> int:
        exits = self._executor.poll()
        for ex in exits:
            for _ in range(3):
                try:
                    with self._sessions.begin() as s:
                        row = s.get(JobRow, ex.job_id)
                        if row is None or row.state not in ACTIVE_STATES:
                            break
                        if row.attempts != ex.attempt:
                            break
                        self._exit_checkpoint(s, row, ex)
                        if ex.lost and row.stop_reason is None:
                            row.stop_reason = StopReason.NODE_DOWN  # not the job's fault: requeue
                        if row.state == JobState.STARTING.value and not ex.lost:
                            # It ran, though the server died before recording its start.
                            transition(s, row, JobState.RUNNING, reason="launched")
                        finish(s, row, exit_code=ex.exit_code, message=ex.message)
                    break
                except StaleDataError:
                    continue
        return len(exits)

    def enforce_max_runtime(self) -> None:
        now = self._clock()
        with self._sessions.begin() as s:
            rows = s.scalars(
                select(JobRow).where(
                    JobRow.state == JobState.RUNNING.value,
                    JobRow.max_runtime_s.is_not(None),
                    JobRow.stop_reason.is_(None),
                )
            )
            for row in rows:
                if row.started_at is not None and now - row.started_at > (row.max_runtime_s or 0):
                    row.stop_reason = StopReason.MAX_RUNTIME
                    row.stop_signalled = False
                    reason = StopReason.MAX_RUNTIME
                    note(s, row, "stop-requested", reason=reason, message="max_runtime")

    def meter_credits(self, *, force: bool = False) -> None:
        """Charge running replicas up to now, at most once a metering interval; then the
        ``stop`` policy of tenants left without credits."""
        now = self._clock()
        if not force and now - self._last_meter < self._meter_s:
            return
        self._last_meter = now
        began = time.process_time()
        for _ in range(3):
            try:
                with self._sessions.begin() as s:
                    if self.lease is not None:
                        self.lease.fence(s.connection())
                    metered = credits_housekeeping(s, now=now)
                if metered.alerts:
                    self.on_credit_alerts(metered.alerts)
                break
            except IntegrityError:  # another server metered an interval first: redo
                continue
            except LeadershipLost:
                self._last_lease_check = 0.0
                return
        self.on_metered(time.process_time() - began)

    def prune_changes(self) -> None:
        """Delete the change rows the kept state has consumed, at most once a
        ``PRUNE_EVERY_S``; a store hiccup here only leaves them for the next time."""
        paced = self.monotonic()
        if paced - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = paced
        try:
            self.live.prune(self._sessions)
        except (IntegrityError, StaleDataError) as exc:  # another server pruned at once
            log.info("change log not pruned this time: %s", type(exc).__name__)

    def signal_stops(self) -> None:
        """Send the stops requested since: SIGTERM, SIGKILL after the grace period. A job
        preempted that declares a ``checkpoint_signal`` is first asked for a checkpoint
        and stopped once it reports one, or once its ``checkpoint_grace`` has passed."""
        with self._sessions() as s:
            rows = s.execute(
                select(
                    JobRow.id,
                    JobRow.attempts,
                    JobRow.stop_reason,
                    JobRow.checkpoint_signal,
                    JobRow.checkpoint_grace_s,
                    JobRow.checkpoint_requested_at,
                ).where(
                    JobRow.state.in_(list(ACTIVE_STATES)),
                    JobRow.stop_reason.is_not(None),
                    JobRow.stop_signalled.is_(False),
                )
            ).all()
        source = checkpoint_source(self._executor)
        for row in rows:
            said: tuple[str, str] | None = None
            if (
                source is not None
                and row.stop_reason == StopReason.PREEMPT
                and row.checkpoint_signal
            ):
                if row.checkpoint_requested_at is None:
                    if self._ask_checkpoint(
                        source, row.id, row.checkpoint_signal, row.checkpoint_grace_s
                    ):
                        continue
                else:
                    said = self._checkpoint_outcome(row)
                    if said is None:
                        continue  # still waiting for it
            self._executor.stop(row.id, self._grace_s)
            try:
                with self._sessions.begin() as s:
                    job = s.get(JobRow, row.id)
                    if job is not None:
                        job.stop_signalled = True
                        if said is not None:
                            note(s, job, said[0], reason=str(StopReason.PREEMPT), message=said[1])
            except StaleDataError:
                self.wake()

    def _ask_checkpoint(
        self, source: ReportsCheckpoints, job_id: int, sig: str, grace_s: float | None
    ) -> bool:
        """Ask a preempted job for a checkpoint; False when there is nothing to ask (its
        attempt is not running any more), so the stop goes on at once."""
        if not source.request_checkpoint(job_id, sig):
            return False
        wait = DEFAULT_CHECKPOINT_GRACE_S if grace_s is None else grace_s
        try:
            with self._sessions.begin() as s:
                job = s.get(JobRow, job_id)
                if job is not None and job.stop_reason == StopReason.PREEMPT:
                    job.checkpoint_requested_at = self._clock()
                    text = f"asked to checkpoint ({sig}); stopped in {wait:g} s at the latest"
                    note(
                        s, job, "checkpoint-requested", reason=str(StopReason.PREEMPT), message=text
                    )
        except StaleDataError:
            self.wake()  # asked again next time round; a request is delivered once each
        return True

    def _checkpoint_outcome(self, row: Any) -> tuple[str, str] | None:
        """The event a waiting preemption stops with (its kind and words), or None while it
        still waits: the checkpoint arrived, or the wait is over without one."""
        waited = max(0.0, self._clock() - row.checkpoint_requested_at)
        report = self._checkpoints.get(row.id)
        if report is not None and report.attempt == row.attempts and report.answered:
            text = f"checkpoint reported within {waited:.0f} s of the request; stopping"
            return "checkpointed", text
        wait = (
            DEFAULT_CHECKPOINT_GRACE_S if row.checkpoint_grace_s is None else row.checkpoint_grace_s
        )
        if waited < wait:
            return None
        return "checkpoint-missed", f"no checkpoint within {wait:g} s of the request; stopping"

    def cycle(self) -> None:
        now = self._clock()
        self._last_cycle = now
        began = time.perf_counter()  # phase timings are measurements, never decisions
        explain = (
            self.live.pending_count <= EXPLAIN_ALL_UP_TO
            or now - self._last_explained >= EXPLAIN_EVERY_S
        )
        with self._sessions() as s:
            loaded = self.live.load(s, now=now, estimates=self.start_estimates, explain=explain)
            loaded, credit_gate = gate(s, loaded, now)
        self.credit_reserved = credit_gate.reserved
        loaded_at = time.perf_counter()
        result = schedule(loaded.snapshot, self._profile)
        decided_at = time.perf_counter()
        try:
            with self._sessions.begin() as s:
                if self.lease is not None:
                    self.lease.fence(s.connection())
                applied = apply_decisions(
                    s,
                    loaded=loaded,
                    result=result,
                    now=now,
                    logs_dir=self._logs_dir,
                    held=credit_gate.held,
                )
        except StaleDataError:
            self.wake()  # a job changed under us; decide again on fresh state
            return
        except LeadershipLost:
            log.error("deposed while applying a cycle; its decisions were rolled back")
            self._last_lease_check = 0.0  # the next _lead() notices and stands by
            return
        self.live.note_reasons(applied.reasons)
        self.cycles += 1
        # What deciding cost (launching is excluded: it mostly waits on the kernel).
        self._last_cycle_end = self._clock()
        self._last_cycle_cost = self._last_cycle_end - now
        self.on_cycle(self._last_cycle_cost)
        reserved = dict(self.credit_reserved)
        if loaded.snapshot.explain:
            self._last_explained = now
            order = applied.queue_order
            self.queue_positions = {job_id: i + 1 for i, job_id in enumerate(order)}
            self._publish(lambda p: (p.queue_order(order), p.reserved(reserved)))
        else:
            self._publish(lambda p: p.reserved(reserved))
        self._learn_spread(loaded.snapshot, result, applied.started, now)
        applied_at = time.perf_counter()
        self._launch_all(applied.started)
        if applied.preempting:
            self.signal_stops()
        self.on_phases(
            {
                "load": loaded_at - began,
                "engine": decided_at - loaded_at,
                "apply": applied_at - decided_at,
                "launch": time.perf_counter() - applied_at,
            }
        )
        self.after_cycle()

    def _learn_spread(
        self, snapshot: ClusterSnapshot, result: CycleResult, started: list[int], now: float
    ) -> None:
        """Remember each job's first plan; once it starts, teach the spread how it held."""
        pending = snapshot.pending
        plans = self._plans
        spread = self.start_estimates.spread
        for job_id in started:
            plan = plans.pop(job_id, None)
            if plan is not None:
                basis, reason, planned_wait, at, milli = plan
                spread.observe(basis, reason, milli, planned_wait, now - at)
        jobs: dict[str, Any] | None = None  # by engine id, built once a new plan needs it
        for d in result.pending:
            if d.planned_start_s is None or d.basis is None:
                continue
            job_id = platform_id(d.job_id)
            if job_id in plans:
                continue
            if jobs is None:
                jobs = {j.id: j for j in pending}
            job = jobs.get(d.job_id)
            milli = 0 if job is None else job.total_gpu_milli
            plans[job_id] = (d.basis, str(d.reason), d.planned_start_s - now, now, milli)
        if not snapshot.explain:
            return  # the result names only some of the jobs still waiting
        waiting = {platform_id(d.job_id) for d in (*result.pending, *result.starts)}
        for job_id in [k for k in plans if k not in waiting]:
            del plans[job_id]  # no longer pending (cancelled)

    @contextmanager
    def _fenced(self) -> Iterator[None]:
        """Start processes only under the lease's fence. A transaction holding nothing but
        the shared fence lock stays open during the start (an exception to "no calls
        inside a transaction", on purpose): a new leader takes over only once this start
        is complete, and its reconcile then stops it; or this start finds it was deposed
        and never happens. So a job never runs under two leaders at once."""
        if self.lease is None:
            yield
            return
        with self._sessions.begin() as s:
            self.lease.fence(s.connection())
            yield

    def _launch_all(self, job_ids: list[int]) -> None:
        """Start a cycle's jobs: their specs read in one session, every start under one
        fence (a new leader waits for the whole batch, as for one start), what runs
        recorded in a transaction per ``MARK_EVERY_S`` of starts (fast starts share one;
        a slow one is recorded as soon as it runs). A start that fails is handled alone."""
        if not job_ids:
            return
        with self._sessions() as s:
            launches = [launch_spec(s, job_id=j, logs_dir=self._logs_dir) for j in job_ids]
        started: list[tuple[JobLaunch, dict[int, ReplicaStarted]]] = []
        marked = time.monotonic()
        try:
            with self._fenced():
                for launch in launches:
                    if launch is None:
                        continue
                    try:
                        started.append((launch, self._executor.start(launch)))
                    except Exception as exc:  # a bad command fails the job, not the loop
                        self._launch_failed(launch.job_id, exc)
                    if time.monotonic() - marked >= MARK_EVERY_S:
                        self._mark_all(started)
                        started, marked = [], time.monotonic()
        except LeadershipLost:
            log.error("deposed before starting %d jobs; the new leader will run them", len(job_ids))
            self._last_lease_check = 0.0
        self._mark_all(started)

    def _mark_all(self, started: list[tuple[JobLaunch, dict[int, ReplicaStarted]]]) -> None:
        if not started:
            return
        try:
            with self._sessions.begin() as s:
                for launch, replicas in started:
                    mark_running(s, job_id=launch.job_id, attempt=launch.attempt, started=replicas)
            return
        except StaleDataError:
            pass  # one of them changed meanwhile: record each alone
        for launch, replicas in started:
            self._mark_running(launch, replicas)

    def _mark_running(self, launch: JobLaunch, replicas: dict[int, ReplicaStarted]) -> None:
        for _ in range(3):
            try:
                with self._sessions.begin() as s:
                    mark_running(s, job_id=launch.job_id, attempt=launch.attempt, started=replicas)
                return
            except StaleDataError:
                continue

    def _launch_failed(self, job_id: int, exc: Exception) -> None:
        with self._sessions.begin() as s:
            row = s.get(JobRow, job_id)
            if row is not None and row.state == JobState.STARTING.value:
                text = str(exc) if isinstance(exc, LaunchError) else f"could not start: {exc}"
                if isinstance(exc, LaunchError) and exc.requeue:  # e.g. its node vanished
                    row.stop_reason = StopReason.NODE_DOWN
                    finish(s, row, exit_code=None, message=text)
                    return
                release(s, row)
                row.message = text
                transition(s, row, JobState.FAILED, reason="launch", message=row.message)

    def _launch(self, job_id: int) -> None:
        self._launch_all([job_id])
