"""What the API needs of the scheduler, wherever the scheduler runs.

The API asks three things of the scheduler and tells it one: the last cycle's queue
positions, the credits running jobs reserve, whether this server's scheduler leads, and
"look again" (``wake``). ``LocalScheduler`` answers them from a loop in the same process
(tests, embedded use); ``RemoteScheduler`` from what the scheduler process publishes in
the store (``scheduler_state``: written by ``StatePublisher``, read at most once per
``ttl_s`` and re-read only when its version moved) and wakes it through
``mosu.service.wakeups``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mosu.service.db.rows import SchedulerStateRow
from mosu.service.wakeups import Waker

QUEUE = "queue"
RESERVED = "credit_reserved"
LEADER = "leader"
HEARTBEAT_S = 2.0
"""How often the leading scheduler says it still leads."""
HEARTBEAT_STALE_S = 10.0
"""A heartbeat older than this is a scheduler that stopped leading (or died)."""


class SchedulerHandle(Protocol):
    def wake(self) -> None: ...

    @property
    def queue_positions(self) -> Mapping[int, int]:
        """Pending job id -> 1-based position in the last cycle's order."""
        ...

    @property
    def credit_reserved(self) -> Mapping[str, int]:
        """Tenant -> micro-credits its running jobs reserve, as of the last cycle."""
        ...

    @property
    def leading(self) -> bool:
        """Whether this server's scheduler holds the lease (schedules) now."""
        ...

    @property
    def role(self) -> str:
        """``leader``, ``standby`` (another server's scheduler leads), or empty for a
        scheduler that needs no lease."""
        ...


class LocalScheduler:
    """The loop runs in this process: read it directly."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop

    def wake(self) -> None:
        self._loop.wake()

    @property
    def queue_positions(self) -> Mapping[int, int]:
        return self._loop.queue_positions  # type: ignore[no-any-return]

    @property
    def credit_reserved(self) -> Mapping[str, int]:
        return self._loop.credit_reserved  # type: ignore[no-any-return]

    @property
    def leading(self) -> bool:
        return bool(self._loop.leading)

    @property
    def role(self) -> str:
        if self._loop.leading:
            return "leader"
        return "standby" if self._loop.lease is not None else ""


SERVER_ID_ENV = "MOSU_SERVER_ID"


def server_id() -> str:
    """Names this server (its API processes and its scheduler process) in the leader's
    heartbeat: chosen by ``new_server_id`` in the process that starts them, inherited by
    the others."""
    return os.environ.get(SERVER_ID_ENV) or new_server_id()


def new_server_id() -> str:
    found = os.urandom(8).hex()
    os.environ[SERVER_ID_ENV] = found
    return found


class _Cached:
    def __init__(self, name: str, decode: Callable[[Any], Any], empty: Any) -> None:
        self.name = name
        self.decode = decode
        self.value = empty
        self.version = -1
        self.read_at = -float("inf")


class RemoteScheduler:
    """The scheduler runs in another process: read what it publishes, wake it by message."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        waker: Waker | None,
        *,
        ttl_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._waker = waker
        self._ttl_s = ttl_s
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._server = server_id()
        self._queue = _Cached(QUEUE, _positions, {})
        self._reserved = _Cached(RESERVED, lambda v: {str(k): int(n) for k, n in v.items()}, {})
        self._leader = _Cached(LEADER, dict, {})

    def wake(self) -> None:
        if self._waker is not None:
            self._waker.wake()

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()

    @property
    def queue_positions(self) -> Mapping[int, int]:
        return self._read(self._queue)  # type: ignore[no-any-return]

    @property
    def credit_reserved(self) -> Mapping[str, int]:
        return self._read(self._reserved)  # type: ignore[no-any-return]

    @property
    def leading(self) -> bool:
        beat = self._read(self._leader)
        fresh = self._wall() - float(beat.get("at", 0.0)) < HEARTBEAT_STALE_S
        return bool(fresh and beat.get("server") == self._server)

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    def _read(self, cached: _Cached) -> Any:
        now = self._clock()
        with self._lock:
            if now - cached.read_at < self._ttl_s:
                return cached.value
            cached.read_at = now
            with self._sessions() as s:
                version = s.scalar(
                    select(SchedulerStateRow.version).where(SchedulerStateRow.name == cached.name)
                )
                if version is not None and version != cached.version:
                    text = s.scalar(
                        select(SchedulerStateRow.value).where(SchedulerStateRow.name == cached.name)
                    )
                    cached.value = cached.decode(json.loads(text or "null") or {})
                    cached.version = version
            return cached.value


def _positions(order: Any) -> dict[int, int]:
    return {int(job_id): i + 1 for i, job_id in enumerate(order or [])}


class StatePublisher:
    """The scheduler's side: writes a value only when it changed since its last write."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time):
        self._sessions = sessions
        self._clock = clock
        self._last: dict[str, str] = {}
        self._beat_at = -float("inf")
        self._server = server_id()

    def publish(self, name: str, value: Any) -> bool:
        """Store ``value`` under ``name``; False if it was what this publisher last wrote."""
        text = json.dumps(value, separators=(",", ":"))
        if self._last.get(name) == text:
            return False
        self._write(name, text)
        self._last[name] = text
        return True

    def queue_order(self, order: list[int]) -> None:
        self.publish(QUEUE, order)

    def reserved(self, reserved: Mapping[str, int]) -> None:
        self.publish(RESERVED, dict(sorted(reserved.items())))

    def heartbeat(self, *, force: bool = False) -> None:
        """Say this server's scheduler leads, at most once a ``HEARTBEAT_S``."""
        now = self._clock()
        if not force and now - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = now
        self._write(LEADER, json.dumps({"server": self._server, "pid": os.getpid(), "at": now}))

    def forget(self) -> None:
        """After losing the lease: write everything again when leading next."""
        self._last.clear()
        self._beat_at = -float("inf")

    def _write(self, name: str, text: str) -> None:
        now = self._clock()
        for _ in range(2):
            try:
                with self._sessions.begin() as s:
                    changed = s.execute(
                        update(SchedulerStateRow)
                        .where(SchedulerStateRow.name == name)
                        .values(version=SchedulerStateRow.version + 1, value=text, updated_at=now)
                    ).rowcount
                    if not changed:
                        s.add(SchedulerStateRow(name=name, version=1, value=text, updated_at=now))
                return
            except IntegrityError:  # another writer created the row first: update it
                continue
