"""The scheduling loop: wake on submit, exit and a periodic tick; run one cycle of the
engine against the store; hand its decisions to the executor.

Runs in one thread that alone talks to the executor, so the executor needs no
locking. API handlers only write the store and call ``wake()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from mosu.core.api import ACTIVE_STATES, JobState
from mosu.engine.cycle import schedule
from mosu.service.db.rows import JobRow
from mosu.service.executor import ExecutorPort
from mosu.service.services.lifecycle import active_allocations, finish, note, release, transition
from mosu.service.services.scheduling import (
    apply_decisions,
    launch_spec,
    load_snapshot,
    mark_running,
)

log = logging.getLogger("mosu.scheduler")

RESTART_MESSAGE = "the server stopped while the job ran; its processes were stopped and it requeued"


def _has_history() -> bool:
    try:
        import mosu.engine.estimates  # noqa: F401
    except ImportError:
        return False
    return True


class SchedulerLoop:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        executor: ExecutorPort,
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
        self._use_history = str(getattr(profile, "estimator", "")) == "history" and _has_history()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cycle = 0.0
        self.queue_positions: dict[int, int] = {}
        """Pending job id → 1-based position in the last cycle's order."""
        self.cycles = 0

    # ------------------------------------------------------------ lifecycle

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self.reconcile()
        self._thread = threading.Thread(target=self._run, name="mosu-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, then stop every running job and requeue it."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._sessions.begin() as s:
            for row in s.scalars(select(JobRow).where(JobRow.state.in_(list(ACTIVE_STATES)))):
                if row.stop_reason is None:
                    row.stop_reason = "restart"
        self._executor.shutdown(self._grace_s)
        self.handle_exits()
        self.reconcile()

    def _run(self) -> None:
        while not self._stopping.is_set():
            woken = self._wake.wait(timeout=self._poll_s)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.run_once(force_cycle=woken)
            except Exception:  # the loop must outlive any one bad cycle
                log.exception("scheduling iteration failed; retrying")
                time.sleep(self._poll_s)

    # ------------------------------------------------------------ one iteration

    def run_once(self, *, force_cycle: bool = True) -> None:
        exited = self.handle_exits()
        self.enforce_max_runtime()
        self.signal_stops()
        now = self._clock()
        if force_cycle or exited or now - self._last_cycle >= self._tick_s:
            self.cycle()

    def reconcile(self) -> None:
        """Crash rule: a job found starting or running when no executor holds it (a new
        server process) has its leftover processes stopped and is requeued as preempted;
        a cancel or max-runtime stop in progress completes as cancelled or failed."""
        with self._sessions() as s:
            plan = [
                (row.id, [a.pid for a in active_allocations(s, row.id) if a.pid])
                for row in s.scalars(select(JobRow).where(JobRow.state.in_(list(ACTIVE_STATES))))
            ]
        for job_id, pids in plan:
            found = self._executor.terminate_orphans(job_id, pids, self._grace_s)
            with self._sessions.begin() as s:
                row = s.get(JobRow, job_id)
                if row is None or row.state not in ACTIVE_STATES:
                    continue
                if row.stop_reason not in ("cancel", "max-runtime"):
                    row.stop_reason = "restart"
                message = RESTART_MESSAGE + (f" ({found} processes stopped)" if found else "")
                finish(s, row, exit_code=None, message=message)
        if plan:
            log.info("reconciled %d jobs left running by a previous server", len(plan))

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
                applied = apply_decisions(s, loaded=loaded, result=result, now=now)
        except StaleDataError:
            self.wake()  # a job changed under us; decide again on fresh state
            return
        self.cycles += 1
        self.queue_positions = {job_id: i + 1 for i, job_id in enumerate(applied.queue_order)}
        for job_id in applied.started:
            self._launch(job_id)
        if applied.preempting:
            self.signal_stops()

    def _launch(self, job_id: int) -> None:
        with self._sessions() as s:
            launch = launch_spec(s, job_id=job_id, logs_dir=self._logs_dir)
        if launch is None:
            return
        try:
            pids = self._executor.start(launch)
        except Exception as exc:  # a bad command or workdir fails the job, not the loop
            with self._sessions.begin() as s:
                row = s.get(JobRow, job_id)
                if row is not None and row.state == JobState.STARTING.value:
                    release(s, row)
                    row.message = f"could not start: {exc}"
                    transition(s, row, JobState.FAILED, reason="launch", message=row.message)
            return
        for _ in range(3):
            try:
                with self._sessions.begin() as s:
                    mark_running(s, job_id=job_id, attempt=launch.attempt, pids=pids)
                return
            except StaleDataError:
                continue
