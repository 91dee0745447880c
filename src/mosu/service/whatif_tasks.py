"""What-if replays as background tasks of the server: durable, bounded, observable,
cancelable.

A task is a row of the store (``whatif_tasks``): every API worker and every server on
the same store sees it, and it outlives the process that accepted it. The server that
accepts a task runs it: it replays an exported window of history twice (``sim.whatif``)
in a child process of its own, so the CPU-bound replay never holds the server's
interpreter lock and a cancel ends it at once (the process is killed). The child
reports progress (jobs replayed of both runs) and finally the report and the PNG of
waits per tenant through a pipe; the runner writes each to the row.

At most ``workers`` tasks run at a time in one server; up to ``max_queued`` more wait
their turn; beyond that a new one is refused (503, retry later). Only the ``keep`` most
recent finished tasks are kept.

Nothing accepted is lost: a runner marks its tasks alive every ``beat_s``. A task whose
runner has not done so for ``stale_s`` (its server was killed) is taken over by any
server's watcher, planned again from its stored request (same window, profile and
changes) and run from the start. A server that stops cleanly hands its unfinished tasks
back at once. A cancel, from any worker, is written to the row; the runner sees it at
its next beat (or at once, in the same process) and ends the replay.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mosu.core.errors import NotFound, PlatformError, Unavailable
from mosu.service.db.whatif_rows import WhatIfTaskRow
from mosu.sim.whatif import Plan


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)
UNFINISHED = (TaskState.QUEUED.value, TaskState.RUNNING.value)


@dataclass(frozen=True)
class Task:
    """A task as the store holds it now."""

    id: str
    created_at: float
    changes: list[str]
    jobs: int
    state: TaskState
    phase: str
    done: int
    total: int
    started_at: float | None
    finished_at: float | None
    error: str | None
    report: dict[str, Any] | None
    plot_png: bytes | None

    @property
    def progress(self) -> float:
        """Jobs replayed over both replays, 0..1."""
        if self.state is TaskState.SUCCEEDED:
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @classmethod
    def of(cls, row: WhatIfTaskRow) -> Task:
        return cls(
            id=row.id,
            created_at=row.created_at,
            changes=list(row.changes),
            jobs=row.jobs,
            state=TaskState(row.state),
            phase=row.phase,
            done=row.done,
            total=row.total,
            started_at=row.started_at,
            finished_at=row.finished_at,
            error=row.error,
            report=row.report,
            plot_png=row.plot_png,
        )


PROGRESS_EVERY = 500
"""Jobs between two progress messages of a replay."""

Replan = Callable[[dict[str, Any]], Plan]
"""Plans a task again from its stored request (a task taken over from a dead server)."""


def _work(plan: Plan, conn: multiprocessing.connection.Connection) -> None:
    """The child: replay, plot, send ``("done", report, png)`` or ``("error", text)``."""
    import io

    from mosu.sim.plots import plot_wait_comparison
    from mosu.sim.whatif import run_whatif

    last = [0]

    def progress(label: str, done: int, total: int) -> None:
        offset = 0 if label == "as configured" else total
        if done - last[0] >= PROGRESS_EVERY or done == total or done < last[0]:
            last[0] = done
            conn.send(("progress", label, offset + done, 2 * total))

    try:
        result = run_whatif(plan, progress=progress)
        buffer = io.BytesIO()
        plot_wait_comparison(result.before, result.after, buffer)
        conn.send(("done", result.report, buffer.getvalue()))
    except PlatformError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # reported as the task's error rather than lost
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class WhatIfTasks:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        replan: Replan,
        workers: int = 1,
        max_queued: int = 4,
        keep: int = 32,
        beat_s: float = 5.0,
        stale_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.replan = replan
        self.workers = max(1, workers)
        self.max_queued = max(0, max_queued)
        self.keep = keep
        self.beat_s = beat_s
        self.stale_s = stale_s
        self.clock = clock
        self.runner = secrets.token_hex(8)
        """This server process, as the ``runner`` of the tasks it runs."""
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.workers)
        self._context = multiprocessing.get_context("spawn")
        self._processes: dict[str, Any] = {}
        """Replay processes of this server, by task id."""
        self._mine: set[str] = set()
        """Unfinished tasks this server runs or is about to run."""
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()

    # ------------------------------------------------------------ the API's side

    def submit(self, plan: Plan, *, request: dict[str, Any], now: float | None = None) -> Task:
        """Accept a checked ``plan`` (``request`` plans it again if this server dies)."""
        at = self.clock() if now is None else now
        with self._lock:
            if self._closed.is_set():
                raise Unavailable("the server is stopping")
            running = sum(1 for p in self._processes.values() if p is not None)
            with self.sessions.begin() as s:
                waiting = s.scalar(
                    select(func.count())
                    .select_from(WhatIfTaskRow)
                    .where(WhatIfTaskRow.state == TaskState.QUEUED.value)
                )
                if (waiting or 0) >= self.max_queued and running >= self.workers:
                    raise Unavailable(
                        f"{running} what-if replays run and {waiting} wait; try again later"
                    )
                row = WhatIfTaskRow(
                    id=secrets.token_hex(8),
                    state=TaskState.QUEUED.value,
                    request=request,
                    changes=plan.changes.describe(),
                    jobs=len(plan.jobs),
                    phase="",
                    done=0,
                    total=2 * len(plan.jobs),
                    runner=self.runner,
                    heartbeat_at=at,
                    created_at=at,
                )
                s.add(row)
                s.flush()
                task = Task.of(row)
                self._forget_old(s)
            self._mine.add(task.id)
        self._spawn(task.id, plan)
        return task

    def get(self, task_id: str) -> Task:
        with self.sessions() as s:
            row = s.get(WhatIfTaskRow, task_id)
            if row is None:
                raise NotFound(f"no what-if task {task_id!r}")
            return Task.of(row)

    def list(self) -> list[Task]:
        with self.sessions() as s:
            rows = s.scalars(
                select(WhatIfTaskRow).order_by(
                    WhatIfTaskRow.created_at.desc(), WhatIfTaskRow.id.desc()
                )
            )
            return [Task.of(r) for r in rows]

    def cancel(self, task_id: str) -> Task:
        with self.sessions.begin() as s:
            row = s.get(WhatIfTaskRow, task_id)
            if row is None:
                raise NotFound(f"no what-if task {task_id!r}")
            if row.state in UNFINISHED:
                self._finish_row(row, TaskState.CANCELLED, error="cancelled")
            task = Task.of(row)
        self._terminate(task_id)
        return task

    def process_of(self, task_id: str) -> Any:
        """The replay process this server runs for ``task_id`` (None if none)."""
        with self._lock:
            return self._processes.get(task_id)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Watch for tasks to take over (and beat for this server's own)."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="whatif-watch", daemon=True)
            self._watcher.start()

    def shutdown(self) -> None:
        """Stop: this server's unfinished tasks go back to the queue for any server."""
        with self._lock:
            self._closed.set()
            mine = sorted(self._mine)
        if mine:
            with self.sessions.begin() as s:
                s.execute(
                    update(WhatIfTaskRow)
                    .where(
                        WhatIfTaskRow.id.in_(mine),
                        WhatIfTaskRow.state.in_(UNFINISHED),
                        WhatIfTaskRow.runner == self.runner,
                    )
                    .values(
                        state=TaskState.QUEUED.value,
                        runner=None,
                        heartbeat_at=0.0,
                        phase="",
                        done=0,
                        started_at=None,
                    )
                )
        for task_id in mine:
            self._terminate(task_id)
        if self._watcher is not None:
            self._watcher.join(timeout=self.beat_s + 5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:  # each records how its replay ended before the store closes
            thread.join(timeout=15)

    def watch_once(self) -> list[str]:
        """One beat: mark this server's tasks alive, end those cancelled elsewhere,
        take over tasks whose runner went silent. Returns the ids taken over."""
        now = self.clock()
        with self._lock:
            mine = sorted(self._mine)
        if mine:
            with self.sessions.begin() as s:
                s.execute(
                    update(WhatIfTaskRow)
                    .where(WhatIfTaskRow.id.in_(mine), WhatIfTaskRow.runner == self.runner)
                    .values(heartbeat_at=now)
                )
                gone = set(mine) - set(
                    s.scalars(
                        select(WhatIfTaskRow.id).where(
                            WhatIfTaskRow.id.in_(mine),
                            WhatIfTaskRow.state.in_(UNFINISHED),
                            WhatIfTaskRow.runner == self.runner,
                        )
                    )
                )
            for task_id in gone:  # cancelled (or taken over) elsewhere
                self._terminate(task_id)
                with self._lock:
                    self._mine.discard(task_id)
        return self._take_over(now)

    # ------------------------------------------------------------ running

    def _watch(self) -> None:
        while not self._closed.wait(self.beat_s):
            with contextlib.suppress(Exception):  # the store may be briefly unreachable
                self.watch_once()

    def _take_over(self, now: float) -> list[str]:
        taken: list[str] = []
        with self._lock:
            mine = set(self._mine)
        with self.sessions() as s:
            stale = list(
                s.execute(
                    select(WhatIfTaskRow.id, WhatIfTaskRow.heartbeat_at, WhatIfTaskRow.request)
                    .where(
                        WhatIfTaskRow.state.in_(UNFINISHED),
                        WhatIfTaskRow.heartbeat_at < now - self.stale_s,
                    )
                    .order_by(WhatIfTaskRow.created_at)
                )
            )
        for task_id, beat, request in stale:
            if self._closed.is_set():
                break
            if task_id in mine:  # this server runs it: its beat is late, not absent
                continue
            with self.sessions.begin() as s:
                # Compare-and-set on the beat: of two servers taking over, one wins.
                claimed = s.execute(
                    update(WhatIfTaskRow)
                    .where(WhatIfTaskRow.id == task_id, WhatIfTaskRow.heartbeat_at == beat)
                    .values(
                        state=TaskState.QUEUED.value,
                        runner=self.runner,
                        heartbeat_at=now,
                        phase="",
                        done=0,
                        started_at=None,
                    )
                ).rowcount
            if not claimed:
                continue
            with self._lock:
                self._mine.add(task_id)
            try:
                plan = self.replan(request)
            except Exception as exc:  # the store changed so much the plan is invalid
                with self.sessions.begin() as s:
                    row = s.get(WhatIfTaskRow, task_id)
                    if row is not None and row.state in UNFINISHED:
                        self._finish_row(row, TaskState.FAILED, error=f"could not resume: {exc}")
                with self._lock:
                    self._mine.discard(task_id)
                continue
            self._spawn(task_id, plan)
            taken.append(task_id)
        return taken

    def _spawn(self, task_id: str, plan: Plan) -> None:
        thread = threading.Thread(
            target=self._run, args=(task_id, plan), name=f"whatif-{task_id}", daemon=True
        )
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def _run(self, task_id: str, plan: Plan) -> None:
        with self._slots:
            with self._lock:
                if self._closed.is_set():
                    return
                receive, send = self._context.Pipe(duplex=False)
                process = self._context.Process(
                    target=_work, args=(plan, send), name=f"mosu-whatif-{task_id}"
                )
                with self.sessions.begin() as s:
                    started = s.execute(
                        update(WhatIfTaskRow)
                        .where(
                            WhatIfTaskRow.id == task_id,
                            WhatIfTaskRow.state == TaskState.QUEUED.value,
                            WhatIfTaskRow.runner == self.runner,
                        )
                        .values(
                            state=TaskState.RUNNING.value,
                            started_at=self.clock(),
                            heartbeat_at=self.clock(),
                            total=2 * len(plan.jobs),
                        )
                    ).rowcount
                if not started:  # cancelled (or handed back) while it waited
                    self._mine.discard(task_id)
                    receive.close()
                    send.close()
                    return
                self._processes[task_id] = process
                process.start()
            send.close()
            reported = False
            try:
                reported = self._follow(task_id, receive)
            finally:
                receive.close()
                if not reported and process.is_alive():
                    # Cancelled or taken over while it ran (whoever noticed first): its
                    # work is nobody's now, and it must not run on to the end.
                    process.kill()
                process.join(timeout=10)
                with self.sessions.begin() as s:
                    row = s.get(WhatIfTaskRow, task_id)
                    if (
                        row is not None
                        and row.state in UNFINISHED
                        and row.runner == self.runner
                        and not self._closed.is_set()
                    ):
                        self._finish_row(row, TaskState.FAILED, error="the replay process ended")
                with self._lock:
                    self._processes.pop(task_id, None)
                    self._mine.discard(task_id)

    def _follow(self, task_id: str, receive: multiprocessing.connection.Connection) -> bool:
        """Store the replay's progress until it reports its end (True: it then exits by
        itself) or stops being this server's to run, or its pipe closes (False)."""
        while True:
            try:
                message = receive.recv()
            except (EOFError, OSError):
                return False
            with self.sessions.begin() as s:
                row = s.get(WhatIfTaskRow, task_id)
                if row is None or row.state not in UNFINISHED or row.runner != self.runner:
                    return False
                row.heartbeat_at = self.clock()
                if message[0] == "progress":
                    _, row.phase, row.done, row.total = message
                elif message[0] == "done":
                    row.report, row.plot_png = message[1], message[2]
                    self._finish_row(row, TaskState.SUCCEEDED)
                    return True
                else:
                    self._finish_row(row, TaskState.FAILED, error=message[1])
                    return True

    def _terminate(self, task_id: str) -> None:
        with self._lock:
            process = self._processes.get(task_id)
        if process is not None and process.is_alive():
            # SIGKILL: a replay has nothing to save, and no handler or signal mask it
            # inherited (a library's, a test runner's) may keep it running.
            process.kill()

    def _finish_row(
        self, row: WhatIfTaskRow, state: TaskState, *, error: str | None = None
    ) -> None:
        row.state = state.value
        row.error = error
        row.finished_at = self.clock()

    def _forget_old(self, s: Session) -> None:
        ids = list(
            s.scalars(
                select(WhatIfTaskRow.id)
                .where(WhatIfTaskRow.state.not_in(UNFINISHED))
                .order_by(WhatIfTaskRow.finished_at.desc(), WhatIfTaskRow.id.desc())
                .offset(self.keep)
            )
        )
        if ids:
            s.execute(delete(WhatIfTaskRow).where(WhatIfTaskRow.id.in_(ids)))
