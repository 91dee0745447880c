"""Reading the change log (``ChangeRow``, migration ``0015_change_log``) in an order that
never skips a committed change.

SQLite has one writer at a time and AUTOINCREMENT ids, so the ids of committed rows
are dense and follow commit order: a reader keeps the last id it read, and a missing
id after it is a change it can no longer see (a gap).

PostgreSQL ids come from a sequence and do not follow commit order: a later id can
commit first, and a rolled-back one never appears. Each row carries its transaction's
id instead, and a reader keeps the snapshot it last read under: every transaction
below its ``xmax`` and not among its in-progress ``xip`` had ended when it read, so
what it has not seen yet is exactly the rows of transactions at or above ``xmax`` or
in ``xip``. A read runs in one REPEATABLE READ transaction, so the changes it returns
and the rows it then loads are of one snapshot.

Pruning deletes what a reader has consumed and records how far (a ``meta`` row); a
reader behind that mark reports a gap and reloads everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.orm import Session

from mosu.service.db.rows import ChangeRow, MetaRow

PRUNED = "change_log_pruned"
"""The ``meta`` row saying up to where the log was pruned (SQLite: the last id
deleted; PostgreSQL: one past the last transaction id deleted)."""
WATCHED_TABLES = ("jobs", "allocations", "nodes", "tenants", "quotas")


@dataclass(frozen=True)
class Position:
    """Where a reader is: on SQLite the last id it read; on PostgreSQL the snapshot it
    read under (``xmin`` is how far it has consumed everything)."""

    last_id: int = 0
    xmin: int = 0
    xmax: int = 0
    xip: frozenset[int] = field(default_factory=frozenset)

    @property
    def floor(self) -> int:
        """PostgreSQL: the lowest transaction id whose changes may still be unread."""
        return min((*self.xip, self.xmax))


Change = tuple[str, str]
"""(kind, key): ``("job", "42")``, ``("node", "n1")``, ``("tenant", "acme")``."""


class ChangeLog:
    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def begin(self, session: Session) -> None:
        """Make the session's transaction one snapshot (PostgreSQL); call first."""
        if self.postgres:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    def installed(self, session: Session) -> bool:
        """Whether every trigger that fills the log is there and enabled: a table rebuilt
        without them would leave the log silently incomplete."""
        if self.postgres:
            # Per table: a row trigger for updates and deletes and a statement trigger
            # for inserts (migration 0016_change_log_inserts).
            found = session.scalars(
                text(
                    "SELECT t.tgname FROM pg_trigger t "
                    "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
                    "AND t.tgname LIKE 'change\\_log\\_%' AND pg_table_is_visible(t.tgrelid)"
                )
            )
            expected = {f"change_log_{table}" for table in WATCHED_TABLES}
            expected |= {f"change_log_{table}_insert" for table in WATCHED_TABLES}
            return set(found) == expected
        found = session.scalar(
            text(
                "SELECT count(*) FROM sqlite_master "
                "WHERE type = 'trigger' AND name LIKE 'change\\_log\\_%' ESCAPE '\\'"
            )
        )
        return found == 3 * len(WATCHED_TABLES)

    def position(self, session: Session) -> Position:
        """Now: a reader that loads the store after this has seen every change before it."""
        if self.postgres:
            snapshot = session.scalar(text("SELECT pg_current_snapshot()::text"))
            xmin, xmax, xip = str(snapshot).split(":")
            return Position(
                xmin=int(xmin),
                xmax=int(xmax),
                xip=frozenset(int(x) for x in xip.split(",") if x),
            )
        last = session.scalar(text("SELECT seq FROM sqlite_sequence WHERE name = 'change_log'"))
        return Position(last_id=int(last or 0))

    def read(self, session: Session, since: Position) -> tuple[Position, set[Change]] | None:
        """The changes committed after ``since`` and the position after them; None if
        some of them can no longer be read (a gap: reload everything)."""
        if self.postgres:
            now = self.position(session)  # first: the transaction's snapshot
            if self._pruned(session) > since.floor:
                return None
            rows = session.execute(
                select(ChangeRow.kind, ChangeRow.key).where(
                    or_(ChangeRow.xid >= since.xmax, ChangeRow.xid.in_(sorted(since.xip)))
                )
            ).all()
            return now, {(kind, key) for kind, key in rows}
        if self._pruned(session) > since.last_id:
            return None
        changes: set[Change] = set()
        last = since.last_id
        for change_id, kind, key in session.execute(
            select(ChangeRow.id, ChangeRow.kind, ChangeRow.key)
            .where(ChangeRow.id > since.last_id)
            .order_by(ChangeRow.id)
        ):
            if change_id != last + 1:
                return None  # a committed change is missing
            last = change_id
            changes.add((kind, key))
        return Position(last_id=last), changes

    def prune(self, session: Session, through: Position) -> int:
        """Delete what a reader at ``through`` has consumed; call in a write transaction.
        The mark left is just past the last row deleted, so a reader that had read all of
        those (another reader behind this one, but not by them) finds no gap."""
        if self.postgres:
            consumed = ChangeRow.xid < through.xmin
            last = session.scalar(select(func.max(ChangeRow.xid)).where(consumed))
        else:
            consumed = ChangeRow.id <= through.last_id
            last = session.scalar(select(func.max(ChangeRow.id)).where(consumed))
        if last is None:
            return 0
        mark = int(last) + 1 if self.postgres else int(last)
        gone = session.execute(delete(ChangeRow).where(consumed))
        row = session.get(MetaRow, PRUNED)
        if row is None:
            session.add(MetaRow(name=PRUNED, value=str(mark)))
        elif int(row.value) < mark:
            row.value = str(mark)
        return int(getattr(gone, "rowcount", 0) or 0)

    def _pruned(self, session: Session) -> int:
        value = session.scalar(select(MetaRow.value).where(MetaRow.name == PRUNED))
        return int(value) if value is not None else -1

    def size(self, session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(ChangeRow)) or 0)
