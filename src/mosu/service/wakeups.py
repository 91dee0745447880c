"""Wakeups across processes: an API process tells the scheduler process that something
changed (a submission, a cancel, a quota), so the next cycle starts now rather than at
the next tick.

PostgreSQL: ``NOTIFY mosu_scheduler`` from the API side, ``LISTEN`` on a connection of
the scheduler's own (``PostgresWaker``, ``PostgresListener``). Notifications between
transactions are delivered in order and at most once per listener session; one lost
while the listener reconnects is covered by the wakeup it gives itself on every
(re)connect, and by the loop's tick.

SQLite: the API and the scheduler share a host, so a Unix datagram socket next to the
database file (``<database>.wake``; an abstract socket named after it when that path is
too long for a socket address) carries a one-byte datagram (``SocketWaker``,
``SocketListener``). A full socket buffer means the scheduler has wakeups it has not read
yet: the datagram is dropped, which loses nothing.

A wake says only "look again": the store is the truth, so a duplicate or a lost wakeup
costs a cycle or a tick, never a decision.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import make_url

__all__ = [
    "CHANNEL",
    "Listener",
    "PostgresListener",
    "PostgresWaker",
    "SocketListener",
    "SocketWaker",
    "Waker",
    "listener_for_url",
    "waker_for_url",
]

log = logging.getLogger("mosu.wakeups")

CHANNEL = "mosu_scheduler"
SOCKET_PATH_MAX = 100
"""Longest socket path used as is (``sun_path`` holds 108 bytes with its NUL)."""
RETRY_S = 1.0
"""How soon a listener or waker that lost its connection tries again."""


class Waker(Protocol):
    def wake(self) -> None:
        """Tell the scheduler to look again; never blocks on the scheduler, never raises."""
        ...

    def close(self) -> None: ...


class Listener(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def _conninfo(url: str) -> str:
    """A libpq URI for psycopg from an SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresWaker:
    """``NOTIFY`` from a thread of its own: ``wake`` only sets a flag, so a burst of
    submissions costs one notification per round trip, not one each, and a request
    never waits on it."""

    def __init__(self, url: str) -> None:
        self._conninfo = _conninfo(url)
        self._pending = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0

    def wake(self) -> None:
        self._pending.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="mosu-notify", daemon=True
                    )
                    self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._pending.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        conn: psycopg.Connection | None = None
        while not self._closed.is_set():
            self._pending.wait()
            if self._closed.is_set():
                break
            self._pending.clear()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self._conninfo,
                        autocommit=True,
                        connect_timeout=5,
                        application_name="mosu-waker",
                    )
                conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
                self.sent += 1
            except psycopg.Error as exc:
                log.warning("could not notify the scheduler (%s); it will poll", type(exc).__name__)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self._closed.wait(RETRY_S)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class _Listener:
    """A daemon thread calling ``on_wake`` for every wakeup ``_run`` receives, until
    ``stop``; ``listening`` is set while it can receive (tests wait for it)."""

    def __init__(self, on_wake: Callable[[], None], *, timeout_s: float = 0.5) -> None:
        self._on_wake = on_wake
        self._timeout_s = timeout_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self.received = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mosu-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError


class PostgresListener(_Listener):
    """``LISTEN`` on a connection of its own; ``on_wake`` for every notification and once
    after each (re)connect (whatever was sent while nobody listened)."""

    def __init__(self, url: str, on_wake: Callable[[], None], *, timeout_s: float = 0.5) -> None:
        super().__init__(on_wake, timeout_s=timeout_s)
        self._conninfo = _conninfo(url)

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="mosu-scheduler-listen",
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._on_wake()
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=self._timeout_s):
                            self.received += 1
                            self._on_wake()
            except psycopg.Error as exc:
                log.warning("scheduler wakeups lost their connection (%s)", type(exc).__name__)
            self.listening.clear()
            self._stopping.wait(RETRY_S)


def socket_address(database: str) -> str:
    """The wakeup socket of an SQLite database file: ``<database>.wake`` beside it, or
    when that is too long for a socket address, an abstract socket named after it."""
    path = os.path.abspath(database) + ".wake"
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:24]
    return f"\0mosu-wake-{digest}"


class SocketWaker:
    """One datagram per wake, sent without blocking; errors mean nobody listens now (the
    scheduler restarts) or it already has wakeups to read: both safe to drop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0

    def wake(self) -> None:
        try:
            self._sock.sendto(b"w", self.address)
            self.sent += 1
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


class SocketListener(_Listener):
    """Receives the datagrams of ``SocketWaker``s. A socket file left by a scheduler that
    died is replaced; one a live scheduler holds is left alone (this one retries, as a
    standby would)."""

    def __init__(self, address: str, on_wake: Callable[[], None], *, timeout_s: float = 0.5):
        super().__init__(on_wake, timeout_s=timeout_s)
        self.address = address
        self._sock: socket.socket | None = None

    def _bind(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
            return sock
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.address.startswith("\0"):
                sock.close()
                return None
        # A file is there: a live listener answers a probe, a stale one refuses it.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.sendto(b"w", self.address)
            sock.close()
            return None  # alive: not ours to take
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
        except OSError:
            pass
        finally:
            probe.close()
        try:
            sock.bind(self.address)
            return sock
        except OSError:
            sock.close()
            return None

    def _run(self) -> None:
        while not self._stopping.is_set():
            sock = self._bind()
            if sock is None:
                self._stopping.wait(RETRY_S)
                continue
            self._sock = sock
            sock.settimeout(self._timeout_s)
            self.listening.set()
            self._on_wake()
            try:
                while not self._stopping.is_set():
                    try:
                        sock.recv(64)
                    except TimeoutError:
                        continue
                    self.received += 1
                    sock.setblocking(False)  # read what else waits: one wake for all
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            sock.recv(64)
                    sock.settimeout(self._timeout_s)
                    self._on_wake()
            finally:
                self.listening.clear()
                sock.close()
                if not self.address.startswith("\0"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.address)


def _sqlite_file(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def waker_for_url(url: str) -> Waker | None:
    """The API side's waker for the store at ``url`` (None: no other process can share
    it, as with an in-memory database)."""
    if make_url(url).get_backend_name() == "postgresql":
        return PostgresWaker(url)
    database = _sqlite_file(url)
    return SocketWaker(socket_address(database)) if database else None


def listener_for_url(url: str, on_wake: Callable[[], None]) -> Listener | None:
    """The scheduler side's listener for the store at ``url``."""
    if make_url(url).get_backend_name() == "postgresql":
        return PostgresListener(url, on_wake)
    database = _sqlite_file(url)
    return SocketListener(socket_address(database), on_wake) if database else None
