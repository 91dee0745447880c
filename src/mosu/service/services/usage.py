"""GPU-seconds per tenant, GPU type and UTC day: closed allocations plus open ones so far."""

from __future__ import annotations

import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import UsageRecord
from mosu.core.errors import NotFound
from mosu.core.models import GPU_MILLI
from mosu.service.db.rows import AllocationRow, UsageRow
from mosu.service.services.auth import Principal
from mosu.service.services.lifecycle import split_by_day


def usage(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None = None,
    now: float | None = None,
) -> list[UsageRecord]:
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    # Plain rows of the columns summed, not ORM objects: a month of a hundred tenants and
    # thousands of open allocations add up in milliseconds.
    query = select(UsageRow.tenant, UsageRow.gpu_type, UsageRow.day, UsageRow.gpu_seconds)
    if tenant is not None:
        query = query.where(UsageRow.tenant == tenant)
    for owner, gpu_type, day, gpu_seconds in session.execute(query):
        totals[(owner, gpu_type, day)] += gpu_seconds
    at = time.time() if now is None else now
    open_query = select(
        AllocationRow.tenant,
        AllocationRow.gpu_type,
        AllocationRow.gpu_indices,
        AllocationRow.gpu_milli,
        AllocationRow.allocated_at,
    ).where(AllocationRow.released_at.is_(None))
    if tenant is not None:
        open_query = open_query.where(AllocationRow.tenant == tenant)
    for owner, gpu_type, indices, milli, allocated_at in session.execute(open_query):
        gpus = len(indices.split(",")) if indices else 0
        share = gpus * milli / GPU_MILLI
        for day, seconds in split_by_day(allocated_at, at):
            totals[(owner, gpu_type, day)] += share * seconds
    return [
        UsageRecord(tenant=t, gpu_type=g, day=d, gpu_seconds=round(s, 3))
        for (t, g, d), s in sorted(totals.items())
        if s > 0
    ]
