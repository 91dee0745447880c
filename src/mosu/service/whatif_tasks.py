"""What-if replays as background tasks of the server: bounded, observable, cancelable.

A task replays an exported window of history twice (``sim.whatif``) in a child process
of its own, so the CPU-bound replay never holds the server's interpreter lock and a
cancel ends it at once (the process is terminated). At most ``workers`` tasks run at a
time; up to ``max_queued`` more wait their turn; beyond that a new one is refused (503,
retry later). The child reports progress (jobs replayed of both runs) and finally the
report and the PNG of waits per tenant through a pipe.

Tasks live in this server's memory: their ids are valid until it restarts, and only the
``keep`` most recent finished ones are kept.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mosu.core.errors import NotFound, Unavailable
from mosu.sim.whatif import Plan


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


@dataclass
class Task:
    id: str
    plan: Plan | None
    created_at: float
    changes: list[str] = field(default_factory=list)
    jobs: int = 0
    state: TaskState = TaskState.QUEUED
    phase: str = ""
    done: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    plot_png: bytes | None = None
    process: Any = field(default=None, repr=False)

    @property
    def progress(self) -> float:
        """Jobs replayed over both replays, 0..1."""
        if self.state is TaskState.SUCCEEDED:
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0


PROGRESS_EVERY = 500
"""Jobs between two progress messages of a replay."""


def _work(plan: Plan, conn: multiprocessing.connection.Connection) -> None:
    """The child: replay, plot, send ``("done", report, png)`` or ``("error", text)``."""
    import io

    from mosu.core.errors import PlatformError
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
    def __init__(self, *, workers: int = 1, max_queued: int = 4, keep: int = 32) -> None:
        self.workers = max(1, workers)
        self.max_queued = max(0, max_queued)
        self.keep = keep
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.workers)
        self._context = multiprocessing.get_context("spawn")
        self._closed = False

    def submit(self, plan: Plan, *, now: float | None = None) -> Task:
        with self._lock:
            if self._closed:
                raise Unavailable("the server is stopping")
            waiting = sum(t.state is TaskState.QUEUED for t in self._tasks.values())
            running = sum(t.state is TaskState.RUNNING for t in self._tasks.values())
            if waiting >= self.max_queued and running >= self.workers:
                raise Unavailable(
                    f"{running} what-if replays run and {waiting} wait; try again later"
                )
            task = Task(
                id=secrets.token_hex(8),
                plan=plan,
                created_at=now or time.time(),
                changes=plan.changes.describe(),
                jobs=len(plan.jobs),
            )
            self._tasks[task.id] = task
            self._forget_old()
        threading.Thread(target=self._run, args=(task,), name=f"whatif-{task.id}").start()
        return task

    def get(self, task_id: str) -> Task:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"no what-if task {task_id!r}")
        return task

    def list(self) -> list[Task]:
        with self._lock:
            return list(reversed(self._tasks.values()))

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        with self._lock:
            if task.state.finished:
                return task
            self._finish(task, TaskState.CANCELLED, error="cancelled")
            process = task.process
        if process is not None and process.is_alive():
            process.terminate()
        return task

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            ids = [t.id for t in self._tasks.values() if not t.state.finished]
        for task_id in ids:
            self.cancel(task_id)

    # ------------------------------------------------------------ the task's thread

    def _run(self, task: Task) -> None:
        with self._slots:
            with self._lock:
                if task.state is not TaskState.QUEUED or task.plan is None:
                    return
                receive, send = self._context.Pipe(duplex=False)
                process = self._context.Process(
                    target=_work, args=(task.plan, send), name=f"mosu-whatif-{task.id}"
                )
                task.process = process
                task.state = TaskState.RUNNING
                task.started_at = time.time()
                task.total = 2 * len(task.plan.jobs)
                process.start()
            send.close()
            try:
                self._follow(task, receive)
            finally:
                receive.close()
                process.join(timeout=10)
                with self._lock:
                    if not task.state.finished:
                        self._finish(task, TaskState.FAILED, error="the replay process ended")
                    task.process = None

    def _follow(self, task: Task, receive: multiprocessing.connection.Connection) -> None:
        while True:
            try:
                message = receive.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                if task.state.finished:
                    return
                if message[0] == "progress":
                    _, task.phase, task.done, task.total = message
                elif message[0] == "done":
                    task.report, task.plot_png = message[1], message[2]
                    self._finish(task, TaskState.SUCCEEDED)
                    return
                else:
                    self._finish(task, TaskState.FAILED, error=message[1])
                    return

    def _finish(self, task: Task, state: TaskState, *, error: str | None = None) -> None:
        task.state = state
        task.error = error
        task.finished_at = time.time()
        task.plan = None  # the jobs are not needed any more

    def _forget_old(self) -> None:
        finished = [t.id for t in self._tasks.values() if t.state.finished]
        for task_id in finished[: max(0, len(finished) - self.keep)]:
            del self._tasks[task_id]
