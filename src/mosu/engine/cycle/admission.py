"""Phase 3: start jobs that fit inside their tenant's guarantee."""

from __future__ import annotations

from mosu.engine.cycle.backfill import take_back
from mosu.engine.cycle.reservations import reserve
from mosu.engine.cycle.starting import rest_over_quota, try_start
from mosu.engine.cycle.work import Outcome, Work
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
