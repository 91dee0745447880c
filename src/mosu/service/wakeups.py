"""Wakeups across processes: an API process tells the scheduler process that something
changed (a submission, a cancel, a quota), so the next cycle starts now rather than at
the next tick.

PostgreSQL: ``NOTIFY mosu_scheduler`` from the API side, ``LISTEN`` on a connection of
the scheduler's own (``PostgresWaker``, ``PostgresListener``). Notifications between
transactions are delivered in order and at most once per listener session; one lost
while the listener reconnects is covered by the wakeup it gives itself on every
(re)connect, and by the loop's tick.

SQLite: the API and the scheduler share a host, so a Unix datagram socket next to the
database file (``<database>.wake``) carries a one-byte datagram (``SocketWaker``,
``SocketListener``). It lives in the data directory, so the directory's permissions
keep other local users out; when its path is too long for a socket address, both sides
reach it through a descriptor of that directory (``/proc/self/fd/N/<name>``) rather
than an abstract socket, which any local user could reach or squat. The listener also
reads the sender's credentials and ignores datagrams from any other user, whatever the
directory's mode. A full socket buffer means the scheduler has wakeups it has not read
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
import struct
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
SOCKET_NAME_MAX = 64
"""Longest socket file name: what follows ``/proc/self/fd/N/`` must fit ``sun_path`` too."""
RETRY_S = 1.0
"""How soon a listener or waker that lost its connection tries again."""
NOTIFY_GAP_S = 0.01
"""The least time between two notifications of one waker: wakes meanwhile ride on the
next one. Under a stream of submissions each wake otherwise costs a notification, the
store's work on it and a turn of the scheduler's loop, while the loop acts at most once
a rest after each cycle anyway."""


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
    submissions costs one notification per round trip (and at most one a
    ``NOTIFY_GAP_S``), not one each, and a request never waits on it."""

    def __init__(self, url: str, *, gap_s: float = NOTIFY_GAP_S) -> None:
        self._conninfo = _conninfo(url)
        self._gap_s = gap_s
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
                self._closed.wait(self._gap_s)
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
    """The wakeup socket of an SQLite database file: ``<database>.wake`` beside it (a
    shorter name in the same directory when the file's own name is too long)."""
    path = os.path.abspath(database) + ".wake"
    directory, name = os.path.split(path)
    if len(os.fsencode(name)) > SOCKET_NAME_MAX:
        name = "mosu-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:24] + ".wake"
    return os.path.join(directory, name)


class _SocketPath:
    """``path`` as a socket address: itself when short enough, else through a descriptor
    of its directory held open for as long as this object lives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._dir_fd: int | None = None
        self.address = path
        if len(os.fsencode(path)) > SOCKET_PATH_MAX:
            directory, name = os.path.split(path)
            try:
                self._dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return  # no directory yet: the socket call fails and is retried
            self.address = f"/proc/self/fd/{self._dir_fd}/{name}"

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


class SocketWaker:
    """One datagram per wake, sent without blocking; errors mean nobody listens now (the
    scheduler restarts) or it already has wakeups to read: both safe to drop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._path = _SocketPath(address)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0

    def wake(self) -> None:
        try:
            self._sock.sendto(b"w", self._path.address)
            self.sent += 1
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()
        self._path.close()


_UCRED = struct.Struct("iII")  # pid, uid, gid as SCM_CREDENTIALS carries them


def _sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return _UCRED.unpack(data[: _UCRED.size])[1]
    return None


class SocketListener(_Listener):
    """Receives the datagrams of ``SocketWaker``s run by this process's user (others are
    counted in ``refused`` and ignored). A socket file left by a scheduler that died is
    replaced; one a live scheduler holds is left alone (this one retries, as a standby
    would)."""

    def __init__(self, address: str, on_wake: Callable[[], None], *, timeout_s: float = 0.5):
        super().__init__(on_wake, timeout_s=timeout_s)
        self.address = address
        self.refused = 0
        self._sock: socket.socket | None = None
        self._uid = os.geteuid()

    def _bind(self, where: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            sock.bind(where)
            return sock
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                sock.close()
                return None
        # A file is there: a live listener answers a probe, a stale one refuses it.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.sendto(b"w", where)
            sock.close()
            return None  # alive: not ours to take
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
        except OSError:
            pass
        finally:
            probe.close()
        try:
            sock.bind(where)
            return sock
        except OSError:
            sock.close()
            return None

    def _from_us(self, sock: socket.socket) -> bool:
        """Read one datagram: whether this user (or root) sent it."""
        _, ancillary, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(_UCRED.size))
        uid = _sender_uid(ancillary)
        if uid in (self._uid, 0):
            return True
        self.refused += 1
        return False

    def _run(self) -> None:
        while not self._stopping.is_set():
            path = _SocketPath(self.address)
            sock = self._bind(path.address)
            if sock is None:
                path.close()
                self._stopping.wait(RETRY_S)
                continue
            self._sock = sock
            sock.settimeout(self._timeout_s)
            self.listening.set()
            self._on_wake()
            try:
                while not self._stopping.is_set():
                    try:
                        if not self._from_us(sock):
                            continue
                    except TimeoutError:
                        continue
                    self.received += 1
                    sock.setblocking(False)  # read what else waits: one wake for all
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            self._from_us(sock)
                    sock.settimeout(self._timeout_s)
                    self._on_wake()
            finally:
                self.listening.clear()
                sock.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path.address)
                path.close()


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
