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
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from mosu.core.api import ACTIVE_STATES, JobState
from mosu.core.executor import DiscoversNodes, Executor, LaunchError
from mosu.engine.cycle import schedule
from mosu.service.db.rows import JobRow
from mosu.service.leader import LeaderLease, LeadershipLost
from mosu.service.services.lifecycle import finish, note, release, transition
from mosu.service.services.nodes import sync_cluster_nodes
from mosu.service.services.scheduling import (
    active_attempts,
    apply_decisions,
    launch_spec,
    load_snapshot,
    mark_running,
)

log = logging.getLogger("mosu.scheduler")

LEASE_CHECK_S = 2.0
"""How often a leader confirms its lease with the database."""
LEASE_RETRY_S = 2.0
"""How often a standby tries to take the lease (takeover well within 10 s)."""
MAX_REST_S = 0.5
"""The longest a requested cycle waits after the last one (a slow first cycle, still
importing and warming up, must not delay the next start by as long)."""


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
    ) -> None:
        self._sessions = sessions
        self._executor = executor
        self._profile = profile
        self._logs_dir = logs_dir
        self._grace_s = grace_s
        self._tick_s = tick_s
        self._poll_s = poll_s
        self._clock = clock
        # Profiles that plan with history-based estimates say so; the plain one does not.
        self._use_history = str(getattr(profile, "estimator", "")) == "history"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cycle = 0.0
        self._cycle_requested = False
        self._last_cycle_end = 0.0
        self._last_cycle_cost = 0.0
        self._last_housekeeping = -math.inf
        self.queue_positions: dict[int, int] = {}
        """Pending job id → 1-based position in the last cycle's order."""
        self.cycles = 0
        self.on_cycle: Callable[[float], None] = lambda _seconds: None
        """Told each applied cycle's deciding time (metrics)."""
        self.lease: LeaderLease | None = None
        """Set before ``start`` when several servers share the store: only its holder
        schedules, and every apply is fenced by it (see ``mosu.service.leader``)."""
        self.leading = False
        self._last_lease_check = 0.0
        self._last_node_sync = -float("inf")

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
                self.reconcile()
            return True
        now = time.monotonic()
        if self.leading and now - self._last_lease_check < LEASE_CHECK_S:
            return True
        self._last_lease_check = now
        if self.leading:
            if self.lease.check():
                return True
            log.error("lost the scheduler lease; leaving running work to the new leader")
            self.leading = False
            self._executor.detach()
            return False
        if not self.lease.acquire():
            return False
        log.info("acquired the scheduler lease")
        self.leading = True
        self.reconcile()
        return True

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
            self._wake.wait(timeout=self._poll_s)
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

    # ------------------------------------------------------------ one iteration

    def run_once(self, *, force_cycle: bool = True, throttle: bool = False) -> None:
        """One iteration. With ``throttle`` (the loop thread), a requested cycle waits
        until as much time has passed since the last one as that one took (at most
        ``MAX_REST_S``), so a long cycle (a deep queue) leaves the API time to answer;
        requests made meanwhile are coalesced into that next cycle. With ``throttle``
        the housekeeping (exits, max runtime, stop signals, node sync) also runs at most
        once a poll interval: each submission wakes the loop, and under a burst of them
        it would otherwise query the store in a tight loop, taking the interpreter
        from the API for nothing."""
        if force_cycle:
            self._cycle_requested = True
        paced = time.monotonic()
        if not throttle or paced - self._last_housekeeping >= self._poll_s:
            self._last_housekeeping = paced
            self.sync_nodes()
            if self.handle_exits():
                self._cycle_requested = True
            self.enforce_max_runtime()
            self.signal_stops()
        now = self._clock()
        rest = min(self._last_cycle_cost, MAX_REST_S)
        rested = not throttle or now - self._last_cycle_end >= rest
        if (self._cycle_requested and rested) or now - self._last_cycle >= self._tick_s:
            self._cycle_requested = False
            self.cycle()

    def sync_nodes(self) -> None:
        """Mirror the nodes of an executor that discovers them (Ray) into the store, at
        most once a tick. A node that went away is ``down`` and its jobs are stopped and
        requeued; one that came back is ``ready`` again (a drain is kept)."""
        if not isinstance(self._executor, DiscoversNodes):
            return
        now = self._clock()
        if now - self._last_node_sync < self._tick_s:
            return
        self._last_node_sync = now
        found = self._executor.cluster_nodes()
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
                        if ex.lost and row.stop_reason is None:
                            row.stop_reason = "node-down"  # not the job's fault: requeue
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
                    row.stop_reason = "max-runtime"
                    row.stop_signalled = False
                    note(s, row, "stop-requested", reason="max-runtime", message="max_runtime")

    def signal_stops(self) -> None:
        with self._sessions() as s:
            ids = list(
                s.scalars(
                    select(JobRow.id).where(
                        JobRow.state.in_(list(ACTIVE_STATES)),
                        JobRow.stop_reason.is_not(None),
                        JobRow.stop_signalled.is_(False),
                    )
                )
            )
        for job_id in ids:
            self._executor.stop(job_id, self._grace_s)
            try:
                with self._sessions.begin() as s:
                    row = s.get(JobRow, job_id)
                    if row is not None:
                        row.stop_signalled = True
            except StaleDataError:
                self.wake()

    def cycle(self) -> None:
        now = self._clock()
        self._last_cycle = now
        with self._sessions() as s:
            loaded = load_snapshot(s, now=now, use_history=self._use_history)
        result = schedule(loaded.snapshot, self._profile)
        try:
            with self._sessions.begin() as s:
                if self.lease is not None:
                    self.lease.fence(s.connection())
                applied = apply_decisions(
                    s, loaded=loaded, result=result, now=now, logs_dir=self._logs_dir
                )
        except StaleDataError:
            self.wake()  # a job changed under us; decide again on fresh state
            return
        except LeadershipLost:
            log.error("deposed while applying a cycle; its decisions were rolled back")
            self._last_lease_check = 0.0  # the next _lead() notices and stands by
            return
        self.cycles += 1
        # What deciding cost (launching is excluded: it mostly waits on the kernel).
        self._last_cycle_end = self._clock()
        self._last_cycle_cost = self._last_cycle_end - now
        self.on_cycle(self._last_cycle_cost)
        self.queue_positions = {job_id: i + 1 for i, job_id in enumerate(applied.queue_order)}
        for job_id in applied.started:
            self._launch(job_id)
        if applied.preempting:
            self.signal_stops()

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

    def _launch(self, job_id: int) -> None:
        with self._sessions() as s:
            launch = launch_spec(s, job_id=job_id, logs_dir=self._logs_dir)
        if launch is None:
            return
        try:
            with self._fenced():
                started = self._executor.start(launch)
        except LeadershipLost:
            log.error("deposed before starting job %d; the new leader will run it", job_id)
            self._last_lease_check = 0.0
            return
        except Exception as exc:  # a bad command or workdir fails the job, not the loop
            with self._sessions.begin() as s:
                row = s.get(JobRow, job_id)
                if row is not None and row.state == JobState.STARTING.value:
                    text = str(exc) if isinstance(exc, LaunchError) else f"could not start: {exc}"
                    if isinstance(exc, LaunchError) and exc.requeue:  # e.g. its node vanished
                        row.stop_reason = "node-down"
                        finish(s, row, exit_code=None, message=text)
                        return
                    release(s, row)
                    row.message = text
                    transition(s, row, JobState.FAILED, reason="launch", message=row.message)
            return
        for _ in range(3):
            try:
                with self._sessions.begin() as s:
                    mark_running(s, job_id=job_id, attempt=launch.attempt, started=started)
                return
            except StaleDataError:
                continue
