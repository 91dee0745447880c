"""Phase 5: lend idle capacity to tenants above their guarantee, in weighted
fair-share (or rank) order up to each limit; with backfill, a blocked job gets a
reservation."""

from __future__ import annotations

import heapq

from mosu.engine.cycle.backfill import take_back
from mosu.engine.cycle.reservations import reserve
from mosu.engine.cycle.starting import rest_over_quota, try_start
from mosu.engine.cycle.work import Outcome, Work, dominant_share
from mosu.engine.ordering import Rank
from mosu.engine.profiles import LendOrder, QueueMode

_BLOCKED = (Outcome.NO_FIT, Outcome.BLOCKED)


def lend_idle(work: Work) -> None:
    mode = work.profile.queue_mode
    fair = work.profile.lend_order == LendOrder.FAIR_SHARE
    cursor: dict[str, int] = {}
    heap: list[tuple[tuple[float | Rank, str], str]] = []

    def push(tenant: str) -> None:
        queue = work.queues[tenant]
        i = cursor.get(tenant, 0)
        while i < len(queue) and work.outcome.get(queue[i].id) is not None:
            i += 1
        cursor[tenant] = i
        if i >= len(queue):
            return
        key = (dominant_share(work, tenant), tenant) if fair else (work.ranks[queue[i].id], tenant)
        heapq.heappush(heap, (key, tenant))

    for tenant in work.queues:
        if tenant not in work.blocked_tenants:
            push(tenant)
    while heap:
        _, tenant = heapq.heappop(heap)
        queue = work.queues[tenant]
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
