"""Phase 3: start jobs that fit inside their tenant's guarantee."""

from __future__ import annotations

from mosu.engine.cycle.backfill import take_back
from mosu.engine.cycle.reservations import reserve
from mosu.engine.cycle.starting import rest_over_quota, try_start
from mosu.engine.cycle.work import INF, Outcome, Work, count_rest, guarantee
from mosu.engine.profiles import QueueMode, QuotaMode


def admit_within_guarantees(work: Work, only: set[str] | None = None) -> None:
    if work.profile.quotas == QuotaMode.SHARED:
        return
    strict = work.profile.queue_mode == QueueMode.STRICT
    backfill = work.profile.queue_mode == QueueMode.BACKFILL
    reclaim = work.profile.reclaim and work.profile.quotas == QuotaMode.BORROW
    most = work.profile.max_reservations
    for tenant, queue in work.queues.items():
        if only is not None and tenant not in only:
            continue
        for pos, job in enumerate(queue):
            settles = not strict and not (backfill and len(work.reservations) < most)
            if settles and _settle_by_counts(work, tenant, pos):
                break
            if work.outcome.get(job.id) == Outcome.STARTED:
                continue
            outcome = try_start(work, job, within_guarantee=True)
            if outcome == Outcome.STARTED or (
                outcome in (Outcome.NO_FIT, Outcome.BLOCKED)
                and take_back(work, job, within_guarantee=True)
            ):
                continue
            if outcome == Outcome.QUOTA:
                if strict or rest_over_quota(work, tenant, job, pos + 1, within_guarantee=True):
                    break  # (a job over quota here has no other effect)
                continue  # it may still borrow in phase 5
            work.outcome[job.id] = outcome
            if reclaim and outcome in (Outcome.NO_FIT, Outcome.BLOCKED):
                work.waiting_guarantee.append(job)
            if outcome == Outcome.NO_FIT and backfill and len(work.reservations) < most:
                reserve(work, job)  # (which holds no more than ``most``)
            if strict:
                work.blocked_tenants.add(tenant)
                break


def _settle_by_counts(work: Work, tenant: str, start: int) -> bool:
    """Settle the rest of ``tenant``'s queue (from ``start``) at once when counts
    decide every job: all allow one GPU type, each needs more than is free of it, and
    no outcome calls for a reservation. ``try_start`` would turn each down on its
    guarantee (usage does not change while nothing starts), its size, or as not
    fitting, and the walk would stop at the first job over its guarantee after which
    ``rest_over_quota`` holds; this gives the same outcomes, waiting jobs and
    over-quota note. False (and nothing done) when counts do not settle it."""
    rest = count_rest(work, tenant, start, guarantee)
    if rest is None:
        return False
    codes, needs, tail = rest.codes, rest.needs, rest.tail_need
    queue = work.queues[tenant]
    profile = work.profile
    waits = profile.reclaim and profile.quotas == QuotaMode.BORROW
    outcome = work.outcome
    waiting = work.waiting_guarantee
    key = (tenant, (rest.gpu_type,), True)
    over: float = work.memo.over_quota.get(key, INF)
    started = Outcome.STARTED
    for k, (job, code) in enumerate(zip(queue[start:], codes, strict=True)):
        if outcome.get(job.id) == started:
            continue
        if code == 1:
            over = min(over, needs[k])
            if start + k + 1 >= len(queue) or tail[start + k + 1] >= over:
                break  # the rest is over the guarantee too
        elif code == 2:
            outcome[job.id] = Outcome.NEVER
        else:
            outcome[job.id] = Outcome.NO_FIT
            if waits:
                waiting.append(job)
    if over != INF:
        work.memo.over_quota[key] = int(over)
    return True
