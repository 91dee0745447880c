"""One active scheduler among several server processes that share one database.

Every ``mosu server`` serves the API; only the holder of the leader lease runs the
scheduling loop. The others call ``acquire`` every couple of seconds and take over
when it succeeds.

PostgreSQL (``PostgresLease``): a session-level advisory lock held on a dedicated
connection for the life of the process. PostgreSQL releases it the moment that session
ends: at once when the holder exits or is killed (the kernel closes its socket), within
about ``keepalive_s * 2`` seconds when the holder's host vanishes (TCP keepalives are
switched on for the session on both ends).

Fencing. A leader can be deposed without knowing it (its connection dies between two
checks). So decisions are applied in a transaction that first calls ``lease.fence(conn)``:
it takes a *shared* transaction-level advisory lock on a second key and checks that this
lease's backend still holds the leader lock. A new leader, right after acquiring, takes
that second key *exclusively* once, which waits for every in-flight apply of the old
leader to commit or abort. Either an old apply commits before the new leader reads its
first snapshot, or it finds itself deposed and rolls back; it can never start a job the
new leader also starts.

SQLite (``FileLease``): servers sharing an SQLite file share a host, so an exclusive
``flock`` on ``<database>.leader`` does the same job; an in-memory database has one
process and gets ``AlwaysLeader``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from mosu.core.errors import Conflict
from mosu.service.private_files import private_file

__all__ = [
    "AlwaysLeader",
    "FileLease",
    "LeaderLease",
    "LeadershipLost",
    "PostgresLease",
    "lease_for_url",
]

# First half of every mosu advisory lock key ("mosu" in ASCII), so mosu's locks are
# easy to tell apart in pg_locks from those of other programs on the same database.
LOCK_NAMESPACE = 0x6D6F7375


class LeadershipLost(Conflict):
    """This process is no longer the leader; whatever it was applying must roll back."""

    code = "leadership-lost"


class LeaderLease(Protocol):
    @property
    def is_leader(self) -> bool:
        """What the last ``acquire``/``check`` found; no database round trip."""
        ...

    def acquire(self) -> bool:
        """Become the leader if nobody else is; True if this process is the leader now."""
        ...

    def check(self) -> bool:
        """Confirm with the database that the lease is still held; False means deposed."""
        ...

    def fence(self, conn: Connection) -> None:
        """Inside an apply transaction: raise ``LeadershipLost`` unless still the leader."""
        ...

    def release(self) -> None:
        """Step down (also at process exit); another process may acquire at once."""
        ...


def _key(name: str) -> int:
    """A stable positive int4 for ``name`` (Python's ``hash`` changes per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest()) & 0x7FFFFFFF


class AlwaysLeader:
    """The only scheduler there can be (an in-memory database has one process)."""

    @property
    def is_leader(self) -> bool:
        return True

    def acquire(self) -> bool:
        return True

    def check(self) -> bool:
        return True

    def fence(self, conn: Connection) -> None:
        return None

    def release(self) -> None:
        return None


class FileLease:
    """An exclusive ``flock`` next to an SQLite database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def is_leader(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        import fcntl

        if self._file is not None:
            return True
        private_file(self.path)
        f = open(self.path, "ab")  # noqa: SIM115 - held open for the life of the lease
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def check(self) -> bool:
        return self.is_leader

    def fence(self, conn: Connection) -> None:
        if self._file is None:
            raise LeadershipLost("this server does not hold the scheduler lease")

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


class PostgresLease:
    """The leader lease as a PostgreSQL advisory lock on a connection of its own.

    ``name`` selects the lease (one per scheduler; tests use their own names).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "mosu-scheduler",
        keepalive_s: int = 4,
        connect_timeout_s: int = 5,
        fence_wait_s: float = 10.0,
    ) -> None:
        self.name = name
        self.key = _key(name)
        self.fence_key = _key(name + "/fence")
        self._keepalive_s = keepalive_s
        self._fence_wait_s = fence_wait_s
        self._engine: Engine = create_engine(
            make_url(url).set(drivername="postgresql+psycopg"),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": connect_timeout_s,
                "application_name": f"mosu-lease:{name}",
                # The client notices a vanished server; the SETs below do the converse.
                "keepalives": 1,
                "keepalives_idle": keepalive_s,
                "keepalives_interval": max(1, keepalive_s // 2),
                "keepalives_count": 2,
            },
        )
        self._conn: Connection | None = None
        self._backend: tuple[int, Any] | None = None
        """(pid, backend_start) of the session holding the lock, while leader."""

    @property
    def is_leader(self) -> bool:
        return self._backend is not None

    @property
    def backend_pid(self) -> int | None:
        return self._backend[0] if self._backend else None

    def acquire(self) -> bool:
        if self._backend is not None:
            return self.check()
        # A session left from an earlier term may have died since; start afresh.
        self._drop()
        try:
            conn = self._connection()
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": self.key},
            ).scalar_one()
            if not got:
                return False
            row = conn.execute(
                text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).one()
            # Wait out any apply the previous leader still has in flight (see fence()).
            conn.execute(text(f"SET lock_timeout = '{int(self._fence_wait_s * 1000)}ms'"))
            conn.execute(
                text("SELECT pg_advisory_lock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": self.fence_key},
            )
            conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": self.fence_key},
            )
            conn.execute(text("SET lock_timeout = 0"))
        except (OperationalError, DBAPIError):
            self._drop()
            return False
        self._backend = (int(row.pid), row.backend_start)
        return True

    def check(self) -> bool:
        if self._conn is None or self._backend is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = :ns AND objid = :key AND objsubid = 2"
                    " AND pid = pg_backend_pid()"
                ),
                {"ns": LOCK_NAMESPACE, "key": self.key},
            ).scalar_one()
        except (OperationalError, DBAPIError):
            held = 0
        if not held:
            self._drop()
        return bool(held)

    def fence(self, conn: Connection) -> None:
        if self._backend is None:
            raise LeadershipLost("this server does not hold the scheduler lease")
        pid, started = self._backend
        conn.execute(
            text("SELECT pg_advisory_xact_lock_shared(:ns, :key)"),
            {"ns": LOCK_NAMESPACE, "key": self.fence_key},
        )
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :ns"
                " AND l.objid = :key AND l.objsubid = 2 AND l.pid = :pid"
                " AND a.backend_start = :started"
            ),
            {"ns": LOCK_NAMESPACE, "key": self.key, "pid": pid, "started": started},
        ).scalar_one()
        if not held:
            self._drop()
            raise LeadershipLost(
                "the scheduler lease was lost (its database session ended); another server "
                "may be scheduling now, so this cycle's decisions were rolled back"
            )

    def release(self) -> None:
        if self._conn is not None and self._backend is not None:
            with contextlib.suppress(OperationalError, DBAPIError):
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:ns, :key)"),
                    {"ns": LOCK_NAMESPACE, "key": self.key},
                )
        self._drop()
        self._engine.dispose()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            # Let the server notice a vanished holder in about 2 * keepalive_s.
            ka = self._keepalive_s
            conn.execute(text(f"SET tcp_keepalives_idle = {int(ka)}"))
            conn.execute(text(f"SET tcp_keepalives_interval = {max(1, int(ka) // 2)}"))
            conn.execute(text("SET tcp_keepalives_count = 2"))
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        self._backend = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def lease_for_url(url: str, *, name: str = "mosu-scheduler") -> LeaderLease:
    """The right lease for the store at ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return PostgresLease(url, name=name)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        return FileLease(Path(os.path.abspath(database) + ".leader"))
    return AlwaysLeader()
