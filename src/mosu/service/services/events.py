"""The append-only event history as a stream: what a reader has not seen yet.

Events are read by id. On SQLite writers take turns, so ids become visible in order; on
PostgreSQL two transactions may commit out of id order, so an id skipped by a read is
kept as a gap and looked for again for ``GAP_WAIT_S`` (a rolled-back insert never fills
its gap, and one belonging to another tenant is never visible to a tenant reader).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mosu.core.api import EventOut
from mosu.service.db.convert import event_out
from mosu.service.db.rows import EventRow
from mosu.service.services.auth import Principal

GAP_WAIT_S = 2.0
"""How long an id skipped by a read may still appear (a transaction slower to commit)."""
MAX_GAPS = 2000
BATCH = 500


def visible(query, principal: Principal, tenant: str | None):  # type: ignore[no-untyped-def]
    """Only the caller's tenant for a tenant token; an operator may narrow to a tenant."""
    if not principal.is_operator:
        # A tenant sees its jobs' events and its credit alerts, never operator records.
        return query.where(
            EventRow.tenant == principal.tenant,
            or_(EventRow.job_id.is_not(None), EventRow.kind == "credits-alert"),
        )
    if tenant is not None:
        return query.where(EventRow.tenant == tenant)
    return query


def last_event_id(session: Session) -> int:
    return session.scalar(select(EventRow.id).order_by(EventRow.id.desc()).limit(1)) or 0


@dataclass
class EventCursor:
    """Where one reader is: the highest id delivered and the gaps below it."""

    after: int
    gaps: dict[int, float] = field(default_factory=dict)
    """Skipped id → monotonic time after which it is given up."""

    def read(
        self, session: Session, *, principal: Principal, tenant: str | None = None
    ) -> list[EventOut]:
        """The next events to deliver, in the order to deliver them."""
        now = time.monotonic()
        self.gaps = {i: t for i, t in self.gaps.items() if t > now}
        newer = EventRow.id > self.after
        where = or_(newer, EventRow.id.in_(sorted(self.gaps))) if self.gaps else newer
        query = visible(select(EventRow).where(where), principal, tenant)
        rows = list(session.scalars(query.order_by(EventRow.id).limit(BATCH)))
        out = []
        for row in rows:
            if row.id in self.gaps:
                del self.gaps[row.id]
            elif row.id > self.after:
                for missing in range(self.after + 1, min(row.id, self.after + 1 + MAX_GAPS)):
                    self.gaps[missing] = now + GAP_WAIT_S
                self.after = row.id
            else:
                continue
            out.append(event_out(row))
        if len(self.gaps) > MAX_GAPS:  # keep the newest: older ones have waited longest
            self.gaps = dict(sorted(self.gaps.items())[-MAX_GAPS:])
        return out
