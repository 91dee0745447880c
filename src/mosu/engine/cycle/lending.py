"""Phase 5: lend idle capacity to tenants above their guarantee, in weighted
fair-share (or rank) order up to each limit; with backfill, a blocked job gets a
reservation."""

from __future__ import annotations

import heapq
from typing import Any

from mosu.engine.cycle.backfill import take_back
from mosu.engine.cycle.reservations import reserve
from mosu.engine.cycle.starting import rest_over_quota, try_start
from mosu.engine.cycle.work import Outcome, Work, count_rest, dominant_share, limit
from mosu.engine.profiles import LendOrder, QueueMode

_BLOCKED = (Outcome.NO_FIT, Outcome.BLOCKED)


def lend_idle(work: Work) -> None:
    mode = work.profile.queue_mode
    order = work.profile.lend_order
    fair = order in (LendOrder.FAIR_SHARE, LendOrder.FAIR_SHARE_RANK)
    by_rank = order == LendOrder.FAIR_SHARE_RANK
    cursor: dict[str, int] = {}
    heap: list[tuple[tuple[Any, ...], str]] = []

    def push(tenant: str) -> None:
        queue = work.queues[tenant]
        i = cursor.get(tenant, 0)
        while i < len(queue) and work.outcome.get(queue[i].id) is not None:
            i += 1
        cursor[tenant] = i
        if i >= len(queue):
            return
        key: tuple[Any, ...]
        if by_rank:
            key = (dominant_share(work, tenant), work.ranks[queue[i].id], tenant)
        elif fair:
            key = (dominant_share(work, tenant), tenant)
        else:
            key = (work.ranks[queue[i].id], tenant)
        heapq.heappush(heap, (key, tenant))

    for tenant in work.queues:
        if tenant not in work.blocked_tenants:
            push(tenant)
    while heap:
        _, tenant = heapq.heappop(heap)
        queue = work.queues[tenant]
        if _settle_by_counts(work, tenant, cursor[tenant]):
            cursor[tenant] = len(queue)
            continue
        while cursor[tenant] < len(queue):
            job = queue[cursor[tenant]]
            cursor[tenant] += 1
            if work.outcome.get(job.id) is not None:
                continue
            outcome = try_start(work, job, within_guarantee=False)
            if outcome == Outcome.STARTED or (
                outcome in _BLOCKED and take_back(work, job, within_guarantee=False)
            ):
                push(tenant)
                break
            work.outcome[job.id] = outcome
            if mode == QueueMode.STRICT:
                work.blocked_tenants.add(tenant)
                break
            if outcome == Outcome.QUOTA and rest_over_quota(
                work, tenant, job, cursor[tenant], within_guarantee=False
            ):
                # The rest would each be tried and found over quota, nothing else.
                outcome_of = work.outcome
                outcome_of.update(
                    {
                        later.id: Outcome.QUOTA
                        for later in queue[cursor[tenant] :]
                        if later.id not in outcome_of
                    }
                )
                cursor[tenant] = len(queue)
                break
            if mode == QueueMode.BACKFILL and outcome == Outcome.NO_FIT:
                reserve(work, job)
            if not fair:
                push(tenant)  # let the next-ranked head of any tenant go first
                break


def _settle_by_counts(work: Work, tenant: str, start: int) -> bool:
    """Give the rest of ``tenant``'s queue (from ``start``) its outcomes at once when
    counts decide every one: all allow one GPU type, each needs more than is free of
    it, and no outcome calls for a reservation. ``try_start`` would then turn each
    down, in any order, on its quota (its usage, limit and cohort do not change
    while nothing starts), on its size, or as not fitting; the walk would give the
    outcomes one job at a time, and ``rest_over_quota`` only shortcuts it. False (and
    nothing done) when counts do not settle it."""
    if work.profile.queue_mode == QueueMode.STRICT or work.cohorts is not None:
        return False
    rest = count_rest(work, tenant, start, limit)
    if rest is None:
        return False
    codes = rest.codes
    queue = work.queues[tenant]
    decided = (Outcome.NO_FIT, Outcome.QUOTA, Outcome.NEVER)
    outcome = work.outcome
    for job, code in zip(queue[start:], codes, strict=True):
        if job.id not in outcome:
            outcome[job.id] = decided[code]
    return True
