"""The Usage page's credits panel: each visible tenant's balance, what is granted now,
its policy when credits run out, and the credits burned per UTC day of the last week
(GPU time and tokens)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.credits import from_micro, to_ms
from mosu.service.db.credit_rows import CreditIntervalRow, CreditTokenMinuteRow
from mosu.service.services import credits
from mosu.service.services.auth import Principal
from mosu.web.panels import Panel

DAYS = 7


def credits_panel(session: Session, principal: Principal, now: datetime) -> Panel | None:
    balances = [
        b
        for b in credits.balances(session, principal=principal, now=now.timestamp())
        if b.grants or b.balance_micro
    ]
    if not balances:
        return None  # no credits granted: nothing to show
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=k) for k in range(DAYS - 1, -1, -1)]
    since = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC).timestamp()
    names = [b.tenant for b in balances]
    day_ms = 86_400_000
    burned: dict[tuple[str, int], int] = defaultdict(int)
    rows = session.execute(
        select(
            CreditIntervalRow.tenant,
            (CreditIntervalRow.end_ms // day_ms).label("day"),
            func.sum(CreditIntervalRow.amount_micro),
        )
        .where(CreditIntervalRow.tenant.in_(names), CreditIntervalRow.end_ms > to_ms(since))
        .group_by(CreditIntervalRow.tenant, "day")
    )
    for tenant, day, amount in rows:
        burned[(tenant, int(day))] += int(amount or 0)
    tokens = session.execute(
        select(
            CreditTokenMinuteRow.tenant,
            (CreditTokenMinuteRow.minute // 1440).label("day"),
            func.sum(CreditTokenMinuteRow.amount_micro),
        )
        .where(
            CreditTokenMinuteRow.tenant.in_(names),
            CreditTokenMinuteRow.minute >= int(since // 60),
        )
        .group_by(CreditTokenMinuteRow.tenant, "day")
    )
    for tenant, day, amount in tokens:  # a model's tokens burn its owner's credits too
        burned[(tenant, int(day))] += int(amount or 0)
    epoch_days = [
        int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() // 86400) for d in days
    ]
    return Panel(
        "credits.html",
        {
            "days": [d.isoformat()[5:] for d in days],
            "rows": [
                {
                    "tenant": b.tenant,
                    "balance": b.balance,
                    "granted": b.granted,
                    "policy": b.on_credits_exhausted.value,
                    "exhausted": b.exhausted,
                    "burned": [from_micro(burned[(b.tenant, d)]) for d in epoch_days],
                }
                for b in balances
            ],
        },
    )
