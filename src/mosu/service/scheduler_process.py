"""The scheduler in a process of its own, supervised by the server that started it.

A server (``mosu up``, ``mosu server``) serves the API in one process or several
(``--workers``) and runs the scheduling loop in one more: a cycle holds only that
process's interpreter, never a request's. Everything the loop drives runs there once
per server, and only while its lease leads: exits, max runtime, credit metering and its
webhook, stop signals, node sync, cycles and launches, model services' replicas and
autoscaler (``ServiceController``). What the API reads of it comes through the store
(``mosu.service.scheduler_link``); what the API tells it comes as a wakeup
(``mosu.service.wakeups``).

``SchedulerProcess`` (the server's side) starts the child, waits for it to say it is
ready (or why it could not start: the error reaches the command line), and starts it
again when it dies, after a pause that doubles up to ``MAX_RESTART_S``. The child dies
with its parent (``PR_SET_PDEATHSIG``): a server killed with ``kill -9`` leaves no
scheduler behind that would keep the lease from the next one.

The child runs ``target(ready, *args)`` in a ``spawn``ed interpreter: ``target``
builds the executor (which lives in the child) and calls ``run_scheduler``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from mosu.core.errors import Unavailable
from mosu.core.executor import Executor
from mosu.service.settings import Settings

log = logging.getLogger("mosu.scheduler")

READY_TIMEOUT_S = 300.0
"""How long a first start may take (an executor connecting to a cluster, migrations)."""
RESTART_S = 1.0
MAX_RESTART_S = 30.0
STOP_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PROCESS_NAME = b"mosu-scheduler"
"""What ``ps -o comm``, ``top`` and ``/proc/PID/comm`` call the scheduler process."""


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the process that started it dies (exit at
    once if that already happened), and name it ``mosu-scheduler``."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME))
    if os.getppid() != parent_pid:
        os._exit(1)


class Ready:
    """The child's side of the pipe to its supervisor: say ready once, or why it failed."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn

    def ready(self) -> None:
        self._send(("ready", os.getpid()))

    def failed(self, message: str) -> None:
        self._send(("error", message))

    def _send(self, message: tuple[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(message)
            self._conn.close()


def run_scheduler(
    settings: Settings, executor: Executor, ready: Ready, *, stop: threading.Event | None = None
) -> None:
    """The child's body: open the store, lead (or stand by), schedule until SIGTERM."""
    from mosu.service.gc_pacing import GcPacer
    from mosu.service.metrics import ProcessMetrics
    from mosu.service.platform import Platform
    from mosu.service.scheduler_link import StatePublisher
    from mosu.service.wakeups import listener_for_url

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        # Ctrl-C reaches the whole process group; the server stops this process itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    platform = Platform(settings, executor)
    platform.open()
    loop = platform.loop
    metrics = ProcessMetrics()
    loop.on_cycle = metrics.observe_cycle
    loop.on_phases = metrics.observe_phases
    loop.after_cycle = GcPacer().after_cycle
    loop.publisher = StatePublisher(platform.sessions)
    listener = listener_for_url(settings.sqlalchemy_url, loop.wake)
    platform.start_scheduler()
    if listener is not None:
        listener.start()
    ready.ready()
    try:
        stop.wait()
    finally:
        if listener is not None:
            listener.stop()
        platform.close()


def _child(target: Callable[..., None], conn: Any, parent_pid: int, args: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ready = Ready(conn)
    try:
        target(ready, *args)
    except BaseException as exc:
        ready.failed(str(exc) or type(exc).__name__)
        raise


class SchedulerProcess:
    """Starts the scheduler process, restarts it when it dies, stops it on request."""

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...] = (),
        *,
        restart_s: float = RESTART_S,
        max_restart_s: float = MAX_RESTART_S,
    ) -> None:
        self._target = target
        self._args = args
        self._restart_s = restart_s
        self._max_restart_s = max_restart_s
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._first: tuple[str, Any] | None = None
        self._first_seen = threading.Event()
        self.starts = 0
        """Processes started so far (1 + restarts)."""

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the child and wait until it is ready; raise with its words if it failed."""
        self._thread = threading.Thread(target=self._supervise, name="mosu-scheduler-sup")
        self._thread.daemon = True
        self._thread.start()
        if not self._first_seen.wait(timeout_s):
            self.stop()
            raise Unavailable(f"the scheduler process did not start in {timeout_s:g} s")
        assert self._first is not None
        kind, detail = self._first
        if kind != "ready":
            self.stop()
            raise Unavailable(f"the scheduler process could not start: {detail}")

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: the loop stops, leaving running work alone
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S + 10)

    def _spawn(self) -> tuple[Any, multiprocessing.connection.Connection]:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child,
            args=(self._target, send, os.getpid(), self._args),
            name="mosu-scheduler",
        )
        # Started from this long-lived thread: PR_SET_PDEATHSIG follows the thread that
        # forked, which must outlive the child.
        process.start()
        send.close()
        self.starts += 1
        return process, receive

    def _supervise(self) -> None:
        pause = self._restart_s
        while not self._stopping.is_set():
            began = time.monotonic()
            process, receive = self._spawn()
            self._process = process
            if self._stopping.is_set():  # stop() came while it was being started
                process.terminate()
            message: tuple[str, Any] | None = None
            with contextlib.suppress(EOFError, OSError):
                # Either the child's first word or its end (EOF) wakes this.
                multiprocessing.connection.wait([receive, process.sentinel])
                if receive.poll():
                    message = receive.recv()
            receive.close()
            if not self._first_seen.is_set():
                self._first = message or ("error", f"exited with {process.exitcode}")
                self._first_seen.set()
                if self._first[0] != "ready":
                    process.join(timeout=STOP_TIMEOUT_S)
                    return
            multiprocessing.connection.wait([process.sentinel])
            if self._stopping.is_set():
                break
            process.join()
            log.error("the scheduler process exited with %s; starting it again", process.exitcode)
            if time.monotonic() - began > 10 * self._max_restart_s:
                pause = self._restart_s  # it had run for a good while: no backoff
            self._stopping.wait(pause)
            pause = min(pause * 2, self._max_restart_s)
        process = self._process
        if process is not None:
            process.join(timeout=STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
