"""What-if replays as background tasks of the server: bounded, observable, cancelable.

A task replays an exported window of history twice (``sim.whatif``) in a child process
of its own, so the CPU-bound replay never holds the server's interpreter lock and a
cancel ends it at once (the process is terminated). At most ``workers`` tasks run at a
time; up to ``max_queued`` more wait their turn; beyond that a new one is refused (503,
retry later). The child reports progress (jobs replayed of both runs) and finally the
report and the PNG of waits per tenant through a pipe.

Tasks live in the memory of the process that accepted them (which runs them) and, with
a ``directory`` (a server's API workers share its data directory), in files there: any
worker of the server lists a task, reads its progress, report and plot, and cancels it
(a marker file the running worker acts on within ``CANCEL_CHECK_S``). A task whose
worker died is reported failed. The bounds count every worker's tasks. Ids are valid
until the server restarts, and only the ``keep`` most recent finished ones are kept.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
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
    owner: int = field(default_factory=os.getpid)
    """The process that runs it."""

    @property
    def progress(self) -> float:
        """Jobs replayed over both replays, 0..1."""
        if self.state is TaskState.SUCCEEDED:
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0


PROGRESS_EVERY = 500
"""Jobs between two progress messages of a replay."""
CANCEL_CHECK_S = 0.5
"""How often the worker running a task looks for a cancel made by another worker."""
_FIELDS = (
    "id",
    "created_at",
    "changes",
    "jobs",
    "phase",
    "done",
    "total",
    "started_at",
    "finished_at",
    "error",
    "report",
    "owner",
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Shelf:
    """Tasks as files in a directory shared by a server's API processes: ``ID.json``
    (written whole, renamed into place), ``ID.png``, ``ID.cancel``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, task: Task) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)  # in the (private) data directory
        data = {k: getattr(task, k) for k in _FIELDS}
        data["state"] = task.state.value
        path = self.directory / f"{task.id}.json"
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        if task.plot_png is not None and not (self.directory / f"{task.id}.png").exists():
            png = self.directory / f"{task.id}.png.{os.getpid()}.tmp"
            png.write_bytes(task.plot_png)
            png.replace(self.directory / f"{task.id}.png")
        tmp.replace(path)

    def load(self, task_id: str) -> Task | None:
        try:
            data = json.loads((self.directory / f"{task_id}.json").read_text())
        except (OSError, ValueError):
            return None
        state = TaskState(data.pop("state"))
        task = Task(plan=None, state=state, **data)
        if not state.finished and not _alive(task.owner):
            task.state, task.error = TaskState.FAILED, "the server process running it ended"
        if state is TaskState.SUCCEEDED:
            with contextlib.suppress(OSError):
                task.plot_png = (self.directory / f"{task_id}.png").read_bytes()
        return task

    def ids(self) -> list[str]:
        return [p.stem for p in self.directory.glob("*.json")]

    def request_cancel(self, task_id: str) -> None:
        (self.directory / f"{task_id}.cancel").touch()

    def cancel_requested(self, task_id: str) -> bool:
        return (self.directory / f"{task_id}.cancel").exists()

    def forget(self, task_id: str) -> None:
        for suffix in (".json", ".png", ".cancel"):
            with contextlib.suppress(OSError):
                (self.directory / f"{task_id}{suffix}").unlink()


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
    def __init__(
        self,
        *,
        workers: int = 1,
        max_queued: int = 4,
        keep: int = 32,
        directory: Path | None = None,
    ) -> None:
        self.workers = max(1, workers)
        self.max_queued = max(0, max_queued)
        self.keep = keep
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.workers)
        self._context = multiprocessing.get_context("spawn")
        self._closed = False
        self._shelf = _Shelf(directory) if directory is not None else None

    def _others(self) -> list[Task]:
        """Tasks other processes of the server hold (none without a shared directory)."""
        if self._shelf is None:
            return []
        found = [self._shelf.load(i) for i in self._shelf.ids() if i not in self._tasks]
        return [t for t in found if t is not None]

    def _save(self, task: Task) -> None:
        if self._shelf is None:
            return
        if not task.state.finished and self._shelf.cancel_requested(task.id):
            return  # cancelled by another process: its record says so already
        with contextlib.suppress(OSError):
            self._shelf.save(task)

    def submit(self, plan: Plan, *, now: float | None = None) -> Task:
        others = self._others()
        with self._lock:
            if self._closed:
                raise Unavailable("the server is stopping")
            every = [*self._tasks.values(), *others]
            waiting = sum(t.state is TaskState.QUEUED for t in every)
            running = sum(t.state is TaskState.RUNNING for t in every)
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
            self._save(task)
            self._forget_old(others)
        threading.Thread(target=self._run, args=(task,), name=f"whatif-{task.id}").start()
        return task

    def get(self, task_id: str) -> Task:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None and self._shelf is not None and "/" not in task_id:
            task = self._shelf.load(task_id)
        if task is None:
            raise NotFound(f"no what-if task {task_id!r}")
        return task

    def list(self) -> list[Task]:
        others = self._others()
        with self._lock:
            every = [*self._tasks.values(), *others]
        return sorted(every, key=lambda t: t.created_at, reverse=True)

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        with self._lock:
            if task.state.finished:
                return task
            ours = task_id in self._tasks
            self._finish(task, TaskState.CANCELLED, error="cancelled")
            process = task.process
        if not ours and self._shelf is not None:
            # Another process runs it: it ends the replay when it sees the marker.
            self._shelf.request_cancel(task_id)
            return task
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
                self._save(task)
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
                if not receive.poll(CANCEL_CHECK_S):
                    if self._shelf is not None and self._shelf.cancel_requested(task.id):
                        self.cancel(task.id)
                        return
                    continue
                message = receive.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                if task.state.finished:
                    return
                if message[0] == "progress":
                    _, task.phase, task.done, task.total = message
                    self._save(task)
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
        self._save(task)

    def _forget_old(self, others: list[Task]) -> None:
        mine = [t for t in self._tasks.values() if t.state.finished]
        finished = sorted(
            [*mine, *(t for t in others if t.state.finished)], key=lambda t: t.created_at
        )
        for task in finished[: max(0, len(finished) - self.keep)]:
            self._tasks.pop(task.id, None)
            if self._shelf is not None:
                self._shelf.forget(task.id)
