"""One scheduling cycle: ``schedule(snapshot, profile) -> CycleResult``.

Least disruptive first, as numbered phases:

1. open a working state (the running allocations, per-tenant usage);
2. order each tenant's queue with the profile's ordering;
3. start jobs that fit inside their tenant's guarantee;
4. reclaim: a tenant below its guarantee whose job does not fit gets borrowed
   capacity back (preempting the cheapest borrowed jobs);
5. lend idle capacity to tenants above their guarantee, in weighted fair-share
   order, up to each limit; with backfill, a blocked job gets a reservation and
   later jobs start only where they cannot delay it;
6. rank preemption: a better-ranked job (priority, or a preemptive ordering such
   as least-attained-service) displaces worse-ranked ones in its scope;
7. a typed reason (and estimated start where known) for every job left pending.

Reclaim runs before lending so that idle capacity is never lent while a lender
is waiting for it.

Each phase has its own module: ``work`` opens the working state (1) and holds the
quota arithmetic, ``ranks`` orders the queues (2), then ``admission`` (3),
``reclaiming`` (4), ``lending`` with ``reservations`` (5), ``rank_preemption`` (6)
and ``reasons`` (7); ``starting`` starts and evicts one job for all of them, and
``victims`` turns running jobs into preemption candidates.
"""

from __future__ import annotations

import gc

from mosu.engine.cycle.admission import admit_within_guarantees
from mosu.engine.cycle.lending import lend_idle
from mosu.engine.cycle.rank_preemption import preempt_by_rank
from mosu.engine.cycle.ranks import order_queues
from mosu.engine.cycle.reasons import close_cycle
from mosu.engine.cycle.reclaiming import reclaim
from mosu.engine.cycle.work import open_cycle
from mosu.engine.decisions import CycleResult
from mosu.engine.profiles import QuotaMode, RankPreemption, SchedulingProfile, build_profile
from mosu.engine.snapshot import ClusterSnapshot

__all__ = ["CycleResult", "SchedulingProfile", "build_profile", "schedule"]


MAX_RECLAIM_ROUNDS = 3
"""Reclaim can push a victim's tenant below its own guarantee; rounds of admit and
reclaim repair that, bounded so a cycle always ends."""


def schedule(snapshot: ClusterSnapshot, profile: SchedulingProfile) -> CycleResult:
    """Decide what starts and what is preempted now. Same input, same result, given
    the same history: a placement that learns the task mix (``fgd``, ``mosu`` in a
    profile) carries what earlier cycles showed it.

    Python's cyclic garbage collector is paused while the cycle runs. A cycle makes
    many short-lived tuples, lists and dicts, nearly none of them in reference
    cycles, and their count sets off the collector's full passes, each over every
    object the caller holds: the snapshot's jobs, and a simulator's whole trace.
    Those passes cost a large share of a cycle with a deep queue and free nothing.
    The collector runs again from the caller's next allocations."""
    resume = gc.isenabled()
    gc.disable()
    try:
        return _schedule(snapshot, profile)
    finally:
        # Re-enabled only by a call that disabled it: a caller that keeps it off (or
        # a cycle in another thread that found it off) finds it as it was.
        if resume:
            gc.enable()


def _schedule(snapshot: ClusterSnapshot, profile: SchedulingProfile) -> CycleResult:
    work = open_cycle(snapshot, profile)  # 1
    # Only a caller's state must be left as it was; one built for this cycle is
    # dropped with it, and undoing every change made to it would be wasted work.
    shared = snapshot.base_state is not None
    cp = work.state.checkpoint()
    try:
        order_queues(work)  # 2
        admit_within_guarantees(work)  # 3
        if profile.reclaim and profile.quotas == QuotaMode.BORROW:
            for _ in range(MAX_RECLAIM_ROUNDS):  # 4
                before = len(work.preempts)
                reclaim(work)
                if len(work.preempts) == before:
                    break
                # A victim's tenant may now be below its own guarantee: admit, then reclaim for it.
                victims_of = {work.preempted_tenant[p.job_id] for p in work.preempts[before:]}
                work.waiting_guarantee.clear()
                admit_within_guarantees(work, only=victims_of)
        lend_idle(work)  # 5
        if profile.rank_preemption != RankPreemption.NONE:
            preempt_by_rank(work)  # 6
        return close_cycle(work)  # 7
    finally:
        if shared:
            work.state.rollback(cp)
        # The victim index refers back to the working state: without it the cycle's
        # working objects are freed as it returns, not left for the cyclic collector.
        work.memo.victim_index = None
