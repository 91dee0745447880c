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
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from mosu.core.models import GPU_MILLI, Job, Placement, RunningJob, Shape, Tenant
from mosu.core.reasons import PendingReason, PreemptReason
from mosu.engine.cohorts import CohortBook
from mosu.engine.decisions import CycleResult, Pending, Preempt, Start
from mosu.engine.ordering import (
    Fifo,
    LeastAttainedService,
    Rank,
    ShortestJobOracle,
    ShortestRemainingOracle,
)
from mosu.engine.placement.base import PlacementPolicy, place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.preemption import Victim, find_victims_by_node, lost_gpu_s, on_nodes
from mosu.engine.profiles import (
    LendOrder,
    QueueMode,
    QuotaMode,
    RankPreemption,
    SchedulingProfile,
    VictimOrder,
    build_profile,
)
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState

__all__ = ["CycleResult", "SchedulingProfile", "build_profile", "schedule"]

INF = math.inf
MAX_RECLAIM_ROUNDS = 3
"""Reclaim can push a victim's tenant below its own guarantee; rounds of admit and
reclaim repair that, bounded so a cycle always ends."""


class _Outcome(Enum):
    STARTED = 0
    QUOTA = 1
    NO_FIT = 2
    BLOCKED = 3
    NEVER = 4


@dataclass(frozen=True, slots=True)
class _Reservation:
    job_id: str
    start_s: float
    nodes: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Avoiding:
    """Placement that refuses a set of nodes (those held for reservations)."""

    inner: PlacementPolicy
    avoid: frozenset[int]
    name: str = "avoiding"

    def select(
        self, state: ClusterState, shape: Shape, candidates: Sequence[int]
    ) -> tuple[int, tuple[int, ...]] | None:
        allowed = [i for i in candidates if i not in self.avoid]
        return self.inner.select(state, shape, allowed) if allowed else None


@dataclass
class _Work:
    """The cycle's working copy and bookkeeping."""

    snap: ClusterSnapshot
    profile: SchedulingProfile
    state: ClusterState
    tenants: dict[str, Tenant]
    running: dict[str, RunningJob]
    usage: dict[tuple[str, str], int]
    free: dict[str, int]
    max_node_gpus: dict[str, int]
    capacity: dict[str, int]
    ranks: dict[str, Rank] = field(default_factory=dict)
    queues: dict[str, list[Job]] = field(default_factory=dict)
    ranked: list[Job] = field(default_factory=list)
    """Every pending job, best rank first."""
    started_jobs: dict[str, Job] = field(default_factory=dict)
    starts: list[Start] = field(default_factory=list)
    preempts: list[Preempt] = field(default_factory=list)
    outcome: dict[str, _Outcome] = field(default_factory=dict)
    waiting_guarantee: list[Job] = field(default_factory=list)
    reservations: list[_Reservation] = field(default_factory=list)
    no_fit: dict[tuple, list[tuple[int, int, int, int, int]]] = field(default_factory=dict)
    blocked_tenants: set[str] = field(default_factory=set)
    running_ends: list[tuple[float, str]] | None = None
    """Estimated end of every running job, sorted; built on the first reservation."""
    guarantees: dict[tuple[str, str], int] = field(default_factory=dict)
    limits: dict[tuple[str, str], float] = field(default_factory=dict)
    preempted_tenant: dict[str, str] = field(default_factory=dict)
    run_classes: dict[str, Rank] | None = None
    """The preemption class of every job running when first asked (fixed for the cycle:
    a running job's service and true remaining time are functions of ``now``)."""
    victim_of: dict[str, Victim | None] = field(default_factory=dict)
    """Running job id -> its ``Victim`` (None while younger than the minimum runtime),
    built on first need: most cycles look at few of them, and the cost is fixed."""
    worst_first_of: dict[Rank, tuple] = field(default_factory=dict)
    running_of_tenant: dict[str, list[str]] | None = None
    """Tenant -> ids of its jobs running when first asked (filter by ``running``)."""
    all_victims: list[Victim] | None = None
    """Every preemptible running job, cheapest first, as the cycle opened."""
    over_quota: dict[tuple[str, tuple[str, ...], bool], int] = field(default_factory=dict)
    """(tenant, allowed GPU types, within guarantee) -> the smallest need found over
    quota since the tenant's usage last shrank. Usage only grows between evictions and
    caps are fixed for the cycle, so any job of that tenant and types needing as much
    is over quota too; queues long with such jobs are skipped at a dict lookup each."""
    tail_need: dict[str, list[int] | None] = field(default_factory=dict)
    """Tenant -> for each position of its queue, the smallest need from there to the end
    (None when its jobs allow different GPU types); built on first need."""
    reserve_failed: set[tuple] = field(default_factory=set)
    cohorts: CohortBook | None = None
    """Cohort usage, when tenants belong to two or more cohorts and may borrow."""
    """Shapes that found no reservation since the state last changed: they would find
    none again, as the search reads nothing else of the job."""

    @property
    def now(self) -> float:
        return self.snap.now


def schedule(snapshot: ClusterSnapshot, profile: SchedulingProfile) -> CycleResult:
    """Decide what starts and what is preempted now. Same input, same result."""
    work = _open(snapshot, profile)  # 1
    cp = work.state.checkpoint()
    try:
        _order_queues(work)  # 2
        _admit_within_guarantees(work)  # 3
        if profile.reclaim and profile.quotas == QuotaMode.BORROW:
            for _ in range(MAX_RECLAIM_ROUNDS):  # 4
                before = len(work.preempts)
                _reclaim(work)
                if len(work.preempts) == before:
                    break
                # A victim's tenant may now be below its own guarantee: admit, then reclaim for it.
                victims_of = {work.preempted_tenant[p.job_id] for p in work.preempts[before:]}
                work.waiting_guarantee.clear()
                _admit_within_guarantees(work, only=victims_of)
        _lend_idle(work)  # 5
        if profile.rank_preemption != RankPreemption.NONE:
            _preempt_by_rank(work)  # 6
        return _close(work)  # 7
    finally:
        work.state.rollback(cp)


# -- 1. open -------------------------------------------------------------------


def _open(snap: ClusterSnapshot, profile: SchedulingProfile) -> _Work:
    state = snap.base_state
    if state is None:
        state = ClusterState(snap.nodes)
        for run in sorted(snap.running, key=lambda r: r.job.id):
            state.assign(run.job.id, run.placement)
        state.commit()
    free: dict[str, int] = {t: 0 for t in state.gpu_types}
    capacity: dict[str, int] = {t: 0 for t in state.gpu_types}
    max_node_gpus: dict[str, int] = {t: 0 for t in state.gpu_types}
    if len(state.gpu_types) == 1:  # the common case, without a pass over every node
        only = state.gpu_types[0]
        capacity[only] = state.capacity_milli
        free[only] = state.capacity_milli - state.allocated_milli
        max_node_gpus[only] = max(map(len, state.gpu_free), default=0)
    else:
        for i, node in enumerate(state.nodes):
            if state.schedulable[i]:
                capacity[node.gpu_type] += node.gpus * GPU_MILLI
                max_node_gpus[node.gpu_type] = max(max_node_gpus[node.gpu_type], node.gpus)
        for i, node in enumerate(state.nodes):
            if state.schedulable[i]:
                free[node.gpu_type] += sum(state.gpu_free[i])
    running = {run.job.id: run for run in snap.running}
    if snap.usage_milli is not None:
        usage = dict(snap.usage_milli)
    else:
        usage = {}
        type_of = {n.name: n.gpu_type for n in state.nodes}
        for run in snap.running:
            tenant = run.job.tenant
            for rp in run.placement:
                key = (tenant, type_of[rp.node])
                usage[key] = usage.get(key, 0) + rp.gpu_milli * len(rp.gpu_indices)
    work = _Work(
        snap=snap,
        profile=profile,
        state=state,
        tenants={t.name: t for t in snap.tenants},
        running=running,
        usage=usage,
        free=free,
        max_node_gpus=max_node_gpus,
        capacity=capacity,
    )
    if profile.quotas == QuotaMode.BORROW and CohortBook.needed(snap.tenants):
        work.cohorts = CohortBook(
            snap.tenants, capacity, usage, lambda t, g: int(_guarantee(work, t, g))
        )
    return work


def _add_usage(work: _Work, tenant: str, placement: Placement, sign: int) -> None:
    state, usage = work.state, work.usage
    for rp in placement:
        gpu_type = state.nodes[state.index_of[rp.node]].gpu_type
        milli = sign * rp.gpu_milli * len(rp.gpu_indices)
        key = (tenant, gpu_type)
        usage[key] = usage.get(key, 0) + milli
        if work.cohorts is not None:
            work.cohorts.add(tenant, gpu_type, milli)


# -- 2. order ------------------------------------------------------------------


class _Inputs:
    """What orderings may read: service, estimates, and (oracles only) true remaining."""

    def __init__(self, work: _Work) -> None:
        self.work = work

    def service_gpu_s(self, job: Job) -> float:
        run = self.work.running.get(job.id)
        if run is not None:
            shape = job.shape
            gpus = shape.gpus * shape.gpu_milli * job.replicas / GPU_MILLI
            return run.attained_gpu_s + max(0.0, self.work.now - run.started_s) * gpus
        return self.work.snap.attained_gpu_s.get(job.id, 0.0)

    def estimate_s(self, job: Job) -> float | None:
        return job.estimate_s

    def true_remaining_s(self, job: Job) -> float:
        return self.work.snap.true_remaining_s.get(job.id, INF)


def _order_queues(work: _Work) -> None:
    ranks = work.ranks = _pending_ranks(work)
    # Ranks end with the job id, so they are unique and sorting by them alone is exact.
    ranked = work.ranked = sorted(work.snap.pending, key=lambda job: ranks[job.id])
    queues: dict[str, list[Job]] = {}
    for job in ranked:
        queue = queues.get(job.tenant)
        if queue is None:
            queue = queues[job.tenant] = []
        queue.append(job)
    work.queues = {name: queues[name] for name in sorted(queues)}


def _pending_ranks(work: _Work) -> dict[str, Rank]:
    """Every pending job's rank; the orderings whose rank reads only the job and its
    true remaining time are computed inline (the same tuples, without the calls)."""
    ordering = work.profile.ordering
    pending = work.snap.pending
    if type(ordering) is Fifo:
        return {j.id: (-j.priority, j.submit_s, j.id) for j in pending}
    if type(ordering) in (ShortestJobOracle, ShortestRemainingOracle):
        remaining = work.snap.true_remaining_s
        return {j.id: (-j.priority, remaining.get(j.id, INF), j.submit_s, j.id) for j in pending}
    inputs = _Inputs(work)
    rank = ordering.rank
    return {j.id: rank(j, inputs) for j in pending}


# -- quota arithmetic ----------------------------------------------------------


def _guarantee(work: _Work, tenant: str, gpu_type: str) -> float:
    key = (tenant, gpu_type)
    cached = work.guarantees.get(key)
    if cached is not None:
        return cached
    t = work.tenants.get(tenant)
    if work.profile.quotas == QuotaMode.SHARED or t is None:
        value = 0
    else:
        value = t.quota(gpu_type).guaranteed_milli
    work.guarantees[key] = value
    return value


def _limit(work: _Work, tenant: str, gpu_type: str) -> float:
    key = (tenant, gpu_type)
    cached = work.limits.get(key)
    if cached is None:  # fixed for the cycle; asked for every job tried
        cached = work.limits[key] = _quota_limit(work, tenant, gpu_type)
    return cached


def _quota_limit(work: _Work, tenant: str, gpu_type: str) -> float:
    mode = work.profile.quotas
    if mode == QuotaMode.SHARED:
        return INF
    t = work.tenants.get(tenant)
    if t is None:
        return 0 if mode == QuotaMode.STATIC else INF
    quota = t.quota(gpu_type)
    if mode == QuotaMode.STATIC:
        return quota.guaranteed_milli
    return INF if quota.limit_milli is None else quota.limit_milli


def _types_of(work: _Work, job: Job) -> tuple[str, ...]:
    return job.gpu_types or work.state.gpu_types


def _borrowed(work: _Work, tenant: str, gpu_type: str) -> int:
    return work.usage.get((tenant, gpu_type), 0) - int(_guarantee(work, tenant, gpu_type))


def _may_borrow(work: _Work, tenant: str, gpu_type: str, milli: int) -> bool:
    """Whether the tenant's cohort leaves ``milli`` more of ``gpu_type`` to borrow."""
    return work.cohorts is None or work.cohorts.may_borrow(tenant, gpu_type, milli)


def _may_borrow_after(
    work: _Work, tenant: str, taken: dict[str, int], victims: Sequence[Victim]
) -> bool:
    """``_may_borrow`` for every type in ``taken`` once ``victims`` are gone."""
    book = work.cohorts
    if book is None:
        return True
    freed = [
        (v.tenant, _node_type(work, rp.node), rp.gpu_milli * len(rp.gpu_indices))
        for v in victims
        for rp in v.placement
    ]
    for who, gpu_type, milli in freed:
        book.add(who, gpu_type, -milli)
    try:
        return all(book.may_borrow(tenant, t, amount) for t, amount in taken.items())
    finally:
        for who, gpu_type, milli in freed:
            book.add(who, gpu_type, milli)


def _node_type(work: _Work, node: str) -> str:
    return work.state.nodes[work.state.index_of[node]].gpu_type


def _dominant_share(work: _Work, tenant: str) -> float:
    t = work.tenants.get(tenant)
    weight = t.weight if t is not None and t.weight > 0 else 1.0
    share = 0.0
    for gpu_type, cap in work.capacity.items():
        if cap:
            share = max(share, work.usage.get((tenant, gpu_type), 0) / cap)
    return share / weight


# -- starting one job ----------------------------------------------------------


def _try_start(work: _Work, job: Job, *, within_guarantee: bool) -> _Outcome:
    """Start ``job`` now if quota, capacity and reservations allow."""
    need = job.total_gpu_milli
    allowed = job.gpu_types or work.state.gpu_types
    if need:
        quota_key = (job.tenant, allowed, within_guarantee)
        if need >= work.over_quota.get(quota_key, INF):
            return _Outcome.QUOTA
        cap = _guarantee if within_guarantee else _limit
        types = tuple(
            t
            for t in allowed
            if work.usage.get((job.tenant, t), 0) + need <= cap(work, job.tenant, t)
        )
        if not within_guarantee and work.cohorts is not None:
            types = tuple(t for t in types if _may_borrow(work, job.tenant, t, need))
        if not types:
            work.over_quota[quota_key] = need
            return _Outcome.QUOTA
        if not any(job.shape.gpus <= work.max_node_gpus.get(t, 0) for t in types):
            return _Outcome.NEVER
        if need > sum(work.free.get(t, 0) for t in types):
            return _Outcome.NO_FIT
    else:
        types = allowed
    avoid = _avoid_for(work, job)
    key = (types, job.topology, avoid)
    dims = job.dims
    failed = work.no_fit.get(key)
    if failed and any(all(f <= d for f, d in zip(fd, dims, strict=True)) for fd in failed):
        return _Outcome.BLOCKED if avoid else _Outcome.NO_FIT
    target = job if types == allowed else replace(job, gpu_types=types)
    policy = work.profile.placement if not avoid else _Avoiding(work.profile.placement, avoid)
    placement = place_job(work.state, target, policy)
    if placement is None:
        work.no_fit.setdefault(key, []).append(dims)
        return _Outcome.BLOCKED if avoid else _Outcome.NO_FIT
    _commit_start(work, job, placement)
    return _Outcome.STARTED


def _commit_start(work: _Work, job: Job, placement: Placement) -> None:
    work.state.assign(job.id, placement)
    _add_usage(work, job.tenant, placement, +1)
    for rp in placement:
        gpu_type = work.state.nodes[work.state.index_of[rp.node]].gpu_type
        work.free[gpu_type] -= rp.gpu_milli * len(rp.gpu_indices)
    work.started_jobs[job.id] = job
    work.starts.append(Start(job.id, placement))
    work.outcome[job.id] = _Outcome.STARTED
    work.reserve_failed.clear()
    if work.reservations:
        work.reservations = [r for r in work.reservations if r.job_id != job.id]


def _evict(work: _Work, victim: Victim, reason: PreemptReason, for_job: str) -> None:
    run = work.running.pop(victim.job_id)
    work.state.release(victim.job_id)
    _add_usage(work, run.job.tenant, run.placement, -1)
    for rp in run.placement:
        gpu_type = work.state.nodes[work.state.index_of[rp.node]].gpu_type
        work.free[gpu_type] += rp.gpu_milli * len(rp.gpu_indices)
    work.preempts.append(Preempt(victim.job_id, reason, for_job))
    work.preempted_tenant[victim.job_id] = run.job.tenant
    # Capacity grew: every remembered no-fit and every reservation planned on the
    # old state is stale; later phases plan afresh.
    work.no_fit.clear()
    work.over_quota.clear()
    work.reservations.clear()
    work.running_ends = None
    work.reserve_failed.clear()


def _estimate(work: _Work, job: Job) -> float:
    return job.estimate_s if job.estimate_s is not None else work.profile.default_estimate_s


def _avoid_for(work: _Work, job: Job) -> frozenset[int]:
    """Nodes held for reservations that ``job`` would still occupy when they begin."""
    if not work.reservations:
        return frozenset()
    end = work.now + _estimate(work, job)
    nodes: set[int] = set()
    for r in work.reservations:
        if r.job_id != job.id and end > r.start_s:
            nodes |= r.nodes
    return frozenset(nodes)


# -- 3. start within guarantees ------------------------------------------------


def _admit_within_guarantees(work: _Work, only: set[str] | None = None) -> None:
    if work.profile.quotas == QuotaMode.SHARED:
        return
    strict = work.profile.queue_mode == QueueMode.STRICT
    reclaim = work.profile.reclaim and work.profile.quotas == QuotaMode.BORROW
    for tenant, queue in work.queues.items():
        if only is not None and tenant not in only:
            continue
        for pos, job in enumerate(queue):
            if work.outcome.get(job.id) == _Outcome.STARTED:
                continue
            outcome = _try_start(work, job, within_guarantee=True)
            if outcome == _Outcome.STARTED:
                continue
            if outcome == _Outcome.QUOTA:
                if strict or _rest_over_quota(work, tenant, job, pos + 1, within_guarantee=True):
                    break  # (a job over quota here has no other effect)
                continue  # it may still borrow in phase 5
            work.outcome[job.id] = outcome
            if reclaim and outcome in (_Outcome.NO_FIT, _Outcome.BLOCKED):
                work.waiting_guarantee.append(job)
            if outcome == _Outcome.NO_FIT and work.profile.queue_mode == QueueMode.BACKFILL:
                _reserve(work, job)
            if strict:
                work.blocked_tenants.add(tenant)
                break


def _rest_over_quota(
    work: _Work, tenant: str, job: Job, start: int, *, within_guarantee: bool
) -> bool:
    """Whether every job from position ``start`` of ``tenant``'s queue is over quota,
    given that ``job`` (of that queue) just was: true when they allow the same GPU
    types and none needs less than the smallest need ``over_quota`` holds for them."""
    queue = work.queues[tenant]
    if start >= len(queue):
        return True
    if tenant not in work.tail_need:
        if len({j.gpu_types for j in queue}) > 1:
            work.tail_need[tenant] = None
        else:
            # ``total_gpu_milli``, inline: gpus * share * replicas is 0 without GPUs too.
            needs = [j.shape.gpus * j.shape.gpu_milli * j.replicas for j in queue]
            tail = np.minimum.accumulate(np.array(needs, dtype=np.int64)[::-1])[::-1]
            work.tail_need[tenant] = tail.tolist()
    tail_need = work.tail_need[tenant]
    if tail_need is None:
        return False
    allowed = job.gpu_types or work.state.gpu_types
    return tail_need[start] >= work.over_quota.get((tenant, allowed, within_guarantee), INF)


# -- 4. reclaim ----------------------------------------------------------------


def _reclaim(work: _Work) -> None:
    def order(j: Job) -> tuple:
        return (_dominant_share(work, j.tenant), work.ranks[j.id])

    # Candidates once per round (built on first need), per tenant, cheapest first;
    # evicted ones are skipped.
    pool: dict[str, list[Victim]] | None = None
    failed: list[tuple[int, int, int, int, int]] = []
    for job in sorted(work.waiting_guarantee, key=order):
        if work.outcome.get(job.id) == _Outcome.STARTED:
            continue
        if _try_start(work, job, within_guarantee=True) == _Outcome.STARTED:
            continue
        dims = job.dims
        if any(all(f <= d for f, d in zip(fd, dims, strict=True)) for fd in failed):
            continue  # a smaller job already found no victims this round
        if pool is None:
            pool = {}
            for v in _running_victims(work):
                pool.setdefault(v.tenant, []).append(v)
        if not _reclaim_for(work, job, pool):
            failed.append(dims)


def _reclaim_for(work: _Work, job: Job, pool: dict[str, list[Victim]]) -> bool:
    """Preempt the cheapest borrowed jobs of other tenants so ``job`` fits its guarantee."""
    types = tuple(
        t
        for t in _types_of(work, job)
        if work.usage.get((job.tenant, t), 0) + job.total_gpu_milli
        <= _guarantee(work, job.tenant, t)
    )
    if not types:
        return False
    target = job if types == _types_of(work, job) else replace(job, gpu_types=types)
    lenders = [
        pool[t]
        for t in sorted(pool)
        if t != job.tenant and any(_borrowed(work, t, g) > 0 for g in work.capacity)
    ]
    if not lenders:
        return False
    # Usage stays fixed until the plan is chosen, so each lender's borrowed amount
    # per GPU type is computed once, not once per candidate and per check.
    borrowed: dict[tuple[str, str], int] = {}

    def borrowed_on(v: Victim) -> int:
        key = (v.tenant, v.gpu_type)
        amount = borrowed.get(key)
        if amount is None:
            amount = borrowed[key] = _borrowed_on(work, v)
        return amount

    # Borrowers of the job's own cohort go first (they run on its cohort's idle
    # guarantee), then jobs wholly on borrowed capacity: taking them leaves their
    # tenant at or above its guarantee.
    candidates = [v for vs in lenders for v in vs if v.job_id in work.running]
    book = work.cohorts
    if book is not None:  # the victim search compares costs, so the cohort goes in them
        home = book.cohort(job.tenant)
        candidates = [replace(v, cost=(book.cohort(v.tenant) != home, *v.cost)) for v in candidates]
    candidates.sort(key=lambda v: (borrowed_on(v) < v.gpu_milli, v.cost))

    def still_borrowed(v: Victim, taken: Sequence[Victim]) -> bool:
        # A victim's tenant must still be above its guarantee once earlier picks go.
        gone = sum(t.gpu_milli for t in taken if t.tenant == v.tenant)
        return borrowed_on(v) - gone > 0

    plan = find_victims_by_node(
        work.state,
        job,
        candidates,
        lambda: place_job(work.state, target, work.profile.placement),
        may_take=still_borrowed,
        need_milli=job.total_gpu_milli,
        free_milli=sum(work.free.get(t, 0) for t in types),
    )
    if plan is None:
        return False
    victims, placement = plan
    for v in victims:
        _evict(work, v, PreemptReason.RECLAIM, job.id)
    _commit_start(work, job, placement)
    return True


def _borrowed_on(work: _Work, v: Victim) -> int:
    return work.usage.get((v.tenant, v.gpu_type), 0) - int(_guarantee(work, v.tenant, v.gpu_type))


def _running_victims(work: _Work) -> list[Victim]:
    """The ``Victim`` of every still-running job old enough to preempt, cheapest first.
    A victim's cost does not change within a cycle and running jobs only leave, so the
    list is built once and filtered."""
    if work.all_victims is None:
        victims = [v for job_id in work.running if (v := _victim(work, job_id)) is not None]
        # Costs end with the job id, so they are unique and the order is total.
        victims.sort(key=lambda v: v.cost)
        work.all_victims = victims
    return [v for v in work.all_victims if v.job_id in work.running]


def _victim(work: _Work, job_id: str) -> Victim | None:
    """Running job ``job_id`` as a preemption candidate (None if it has run less than
    the profile's minimum), built once per cycle."""
    memo = work.victim_of
    if job_id in memo:
        return memo[job_id]
    run = work.running[job_id]
    now = work.now
    victim: Victim | None = None
    if now - run.started_s >= work.profile.min_runtime_s:
        order = work.profile.victim_order
        gpu = run.job.total_gpu_milli
        if order == VictimOrder.CHEAPEST:
            cost: tuple[float | str, ...] = (run.job.priority, lost_gpu_s(run, now), gpu, job_id)
        elif order == VictimOrder.SERVED:
            klass = _running_class_map(work)[job_id][1:]
            served = tuple(-x for x in klass if isinstance(x, (int, float)))
            total = run.attained_gpu_s + max(0.0, now - run.started_s) * gpu / GPU_MILLI
            cost = (run.job.priority, *served, lost_gpu_s(run, now), -total, gpu, job_id)
        else:
            cost = (run.job.priority, -run.started_s, job_id)
        state = work.state
        gpu_type = (
            state.nodes[state.index_of[run.placement[0].node]].gpu_type if run.placement else ""
        )
        held = on_nodes(state, run.placement)
        victim = Victim(job_id, run.job.tenant, run.placement, gpu, cost, gpu_type, held)
    memo[job_id] = victim
    return victim


# -- 5. lend idle capacity, with backfill reservations -------------------------


def _lend_idle(work: _Work) -> None:
    mode = work.profile.queue_mode
    fair = work.profile.lend_order == LendOrder.FAIR_SHARE
    cursor: dict[str, int] = {}
    heap: list[tuple[tuple, str]] = []

    def push(tenant: str) -> None:
        queue = work.queues[tenant]
        i = cursor.get(tenant, 0)
        while i < len(queue) and work.outcome.get(queue[i].id) is not None:
            i += 1
        cursor[tenant] = i
        if i >= len(queue):
            return
        key = (_dominant_share(work, tenant), tenant) if fair else (work.ranks[queue[i].id], tenant)
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
            outcome = _try_start(work, job, within_guarantee=False)
            if outcome == _Outcome.STARTED:
                push(tenant)
                break
            work.outcome[job.id] = outcome
            if mode == QueueMode.STRICT:
                work.blocked_tenants.add(tenant)
                break
            if outcome == _Outcome.QUOTA and _rest_over_quota(
                work, tenant, job, cursor[tenant], within_guarantee=False
            ):
                # The rest would each be tried and found over quota, nothing else.
                outcome_of = work.outcome
                outcome_of.update(
                    {
                        later.id: _Outcome.QUOTA
                        for later in queue[cursor[tenant] :]
                        if later.id not in outcome_of
                    }
                )
                cursor[tenant] = len(queue)
                break
            if mode == QueueMode.BACKFILL and outcome == _Outcome.NO_FIT:
                _reserve(work, job)
            if not fair:
                push(tenant)  # let the next-ranked head of any tenant go first
                break


def _reserve(work: _Work, job: Job) -> None:
    """Hold capacity for a blocked job from the earliest time it can start."""
    if len(work.reservations) >= work.profile.max_reservations:
        return
    if job.total_gpu_milli <= GPU_MILLI:
        return  # one GPU frees up with the next completion: nothing to protect
    if any(r.job_id == job.id for r in work.reservations):
        return
    failed_key = (job.dims, job.gpu_types, job.topology)
    if failed_key in work.reserve_failed:
        return
    state = work.state
    now = work.now
    if work.running_ends is None:
        default = work.profile.default_estimate_s
        work.running_ends = [
            (max(run.started_s + (d if (d := run.job.estimate_s) is not None else default), now), k)
            for k, run in work.running.items()
        ]
        work.running_ends.sort()
    started = sorted((now + _estimate(work, j), k) for k, j in work.started_jobs.items())
    held = frozenset().union(*(r.nodes for r in work.reservations)) if work.reservations else None
    policy = work.profile.placement if held is None else _Avoiding(work.profile.placement, held)
    types = _types_of(work, job)
    free = sum(work.free.get(t, 0) for t in types)
    need = job.total_gpu_milli
    gpus = job.shape.gpus
    whole = job.shape.gpu_milli == GPU_MILLI
    # Releases wait in ``deferred`` until a placement is worth trying: until then only
    # the freed total and, per node touched, the GPUs' free shares (``shadow``) matter,
    # and keeping those here is much cheaper than releasing in the state.
    deferred: list[str] = []
    shadow: dict[int, list[int]] = {}
    # One replica is placed iff some node is a candidate (see ``_shadow_candidate``).
    # When none is at the start, candidates can appear only among the nodes whose
    # capacity grew since none was (``grown``), so a placement attempt that would
    # find none is skipped; the shadow then also tracks free CPU and memory.
    shape = job.shape
    single = whole and job.replicas == 1
    if single:
        start = state.candidate_array(shape, job.gpu_types).tolist()
        single = not any(held is None or i not in held for i in start)
    shadow_cpu_mem: dict[int, list[int]] = {}
    grown: set[int] = set()
    cp = state.checkpoint()
    try:
        # Every job holding capacity, by estimated end (each id occurs once).
        for end, job_id in heapq.merge(work.running_ends, started):
            released = state.holdings.get(job_id)
            if released is None:
                continue
            for rp in released:
                i = state.index_of[rp.node]
                if state.nodes[i].gpu_type in types:
                    free += rp.gpu_milli * len(rp.gpu_indices)
                if whole:
                    node_free = shadow.get(i)
                    if node_free is None:
                        node_free = shadow[i] = list(state.gpu_free[i])
                        if single:
                            shadow_cpu_mem[i] = [state.cpu_free[i], state.mem_free[i]]
                    for g in rp.gpu_indices:
                        node_free[g] += rp.gpu_milli
                    if single:
                        cpu_mem = shadow_cpu_mem[i]
                        cpu_mem[0] += rp.cpu_milli
                        cpu_mem[1] += rp.mem_mib
                        grown.add(i)
            deferred.append(job_id)
            if free < need:
                continue
            # Placement failed before this release, so it can succeed now only on a node
            # this release opened up.
            if whole and not any(
                sum(f == GPU_MILLI for f in shadow[state.index_of[rp.node]]) >= gpus
                for rp in released
            ):
                continue
            if single:
                found = [
                    i
                    for i in grown
                    if _shadow_candidate(state, job, i, shadow[i], shadow_cpu_mem[i], held)
                ]
                grown.clear()  # placed below, or else none of them is a candidate
                if not found:
                    continue  # no candidate anywhere: placement would fail
                if type(work.profile.placement) is BestFit:
                    # What ``BestFit.select`` takes among these (the only candidates):
                    # the least free GPU, then the lowest index; no need to release.
                    best = min(found, key=lambda i: (sum(shadow[i]), i))
                    work.reservations.append(_Reservation(job.id, end, frozenset((best,))))
                    work.outcome[job.id] = _Outcome.NO_FIT
                    work.reserve_failed.clear()
                    return
            for d in deferred:
                state.release(d)
            deferred.clear()
            shadow.clear()
            shadow_cpu_mem.clear()
            placement = place_job(state, job, policy)
            if placement is not None:
                nodes = frozenset(state.index_of[rp.node] for rp in placement)
                work.reservations.append(_Reservation(job.id, end, nodes))
                work.outcome[job.id] = _Outcome.NO_FIT
                work.reserve_failed.clear()
                return
    finally:
        state.rollback(cp)
    work.reserve_failed.add(failed_key)


def _shadow_candidate(
    state: ClusterState,
    job: Job,
    i: int,
    gpu_free: list[int],
    cpu_mem: list[int],
    held: frozenset[int] | None,
) -> bool:
    """Whether node ``i``, with these free GPU shares, CPU and memory, is a node where
    ``place_job`` could put ``job``'s one whole-GPU replica: what
    ``ClusterState.candidate_array`` tests, less the nodes held for reservations."""
    shape = job.shape
    return (
        state.schedulable[i]
        and job.allows(state.nodes[i].gpu_type)
        and (held is None or i not in held)
        and cpu_mem[0] >= shape.cpu_milli
        and cpu_mem[1] >= shape.mem_mib
        and sum(f == GPU_MILLI for f in gpu_free) >= shape.gpus
    )


# -- 6. rank preemption --------------------------------------------------------


def _preempt_by_rank(work: _Work) -> None:
    ordering = work.profile.ordering
    n = ordering.class_len
    scope = work.profile.rank_preemption
    outcome = work.outcome
    waiting = (_Outcome.NO_FIT, _Outcome.BLOCKED, _Outcome.QUOTA)
    # The jobs still waiting, best rank first, read lazily: the walk usually stops
    # early. Only the job at hand can start in the walk, so the jobs ahead are
    # unchanged when reached.
    pending = (j for j in work.ranked if (o := outcome.get(j.id)) is None or o in waiting)
    first = next(pending, None)
    if first is None or not work.running:
        return
    best = work.ranks[first.id][:n]
    run_class = _running_class_map(work)
    if len(run_class) != len(work.running):  # reclaim evicted some since it was built
        run_class = {k: v for k, v in run_class.items() if k in work.running}
    worst = max(run_class.values())
    if not worst > best:
        return  # nothing running ranks worse than the best waiting job
    attempts = 0
    failed: dict[str, list[tuple[tuple[int, int, int, int, int], Rank]]] = {}
    dominated: set[tuple[str, tuple[int, int, int, int, int]]] = set()
    """(tenant, size) of jobs found dominated: failures only accumulate, so they stay so."""
    undominated: dict[str, set[tuple[int, int, int, int, int]]] = {}
    """Tenant -> sizes found not dominated since that tenant last failed."""
    own_worst: dict[str, Rank] | None = None
    freed = False
    for job in itertools.chain((first,), pending):
        if freed and _try_start(work, job, within_guarantee=True) == _Outcome.STARTED:
            continue  # capacity an earlier preemption left over
        klass = work.ranks[job.id][:n]
        if klass >= worst or attempts >= work.profile.max_preemption_attempts:
            if not freed:
                # Classes only grow along ``pending``, ``attempts`` only grows and
                # ``worst`` changes only with a preemption: no later job would act.
                break
            continue
        # A job no smaller and no better ranked than one of its tenant's that found
        # no victims this cycle would find none either. Every failure comes from an
        # earlier job of ``pending``, so none ranks worse than this one, and the
        # answer depends only on the tenant and the job's size: a "yes" is remembered
        # for the cycle, a "no" until the tenant fails again.
        dims = job.dims
        tenant = job.tenant
        if (tenant, dims) in dominated:
            continue
        clear = undominated.get(tenant)
        if clear is None or dims not in clear:
            if any(
                k <= klass and all(f <= d for f, d in zip(fd, dims, strict=True))
                for fd, k in failed.get(tenant, ())
            ):
                dominated.add((tenant, dims))
                continue
            undominated.setdefault(tenant, set()).add(dims)
        attempts += 1
        # Only the tenant's own jobs can make room in tenant scope, or for a job held
        # back by its quota: none ranking worse means no victims, without a search.
        own_scope = scope == RankPreemption.TENANT or outcome.get(job.id) == _Outcome.QUOTA
        if own_worst is None:
            own_worst = {}
            for k, c in run_class.items():
                t = work.running[k].job.tenant
                if t not in own_worst or c > own_worst[t]:
                    own_worst[t] = c
        if (own_scope and not own_worst.get(job.tenant, klass) > klass) or not _preempt_for(
            work, job, klass, run_class, scope
        ):
            failed.setdefault(tenant, []).append((dims, klass))
            undominated.pop(tenant, None)
            continue
        freed = True
        own_worst = None
        run_class = {k: v for k, v in run_class.items() if k in work.running}
        worst = max(run_class.values()) if run_class else klass
    if freed:  # what victims left over goes to guarantees first, then to borrowers
        # (jobs started in this phase are skipped below; no other outcome changed)
        rest = [j for j in work.ranked if outcome.get(j.id) != _Outcome.NEVER]
        # With static partitions the limit is the guarantee: a second pass would
        # repeat the first on no more capacity.
        passes = (True,) if work.profile.quotas == QuotaMode.STATIC else (True, False)
        for within in passes:
            for job in rest:
                if outcome.get(job.id) != _Outcome.STARTED:
                    _try_start(work, job, within_guarantee=within)


def _running_class_map(work: _Work) -> dict[str, Rank]:
    """``run_classes``, computed on first need (running jobs only leave afterwards, so
    its keys include every job still running)."""
    if work.run_classes is None:
        work.run_classes = _running_classes(work)
    return work.run_classes


def _running_classes(work: _Work) -> dict[str, Rank]:
    """The preemption class of every running job (a fast path for LAS)."""
    ordering = work.profile.ordering
    n = ordering.class_len
    if isinstance(ordering, LeastAttainedService):
        now = work.now
        queue_of = functools.partial(bisect.bisect_right, ordering.thresholds_gpu_s)
        return {
            job_id: (
                -run.job.priority,
                queue_of(
                    run.attained_gpu_s
                    + max(0.0, now - run.started_s)
                    * (run.job.shape.gpus * run.job.shape.gpu_milli * run.job.replicas / GPU_MILLI)
                ),
            )
            for job_id, run in work.running.items()
        }
    if type(ordering) in (ShortestJobOracle, ShortestRemainingOracle):
        remaining = work.snap.true_remaining_s
        return {
            job_id: (-run.job.priority, remaining.get(job_id, INF), run.job.submit_s, job_id)[:n]
            for job_id, run in work.running.items()
        }
    inputs = _Inputs(work)
    return {job_id: ordering.rank(run.job, inputs)[:n] for job_id, run in work.running.items()}


def _preempt_for(
    work: _Work,
    job: Job,
    klass: Rank,
    run_class: dict[str, Rank],
    scope: RankPreemption,
) -> bool:
    """Displace worse-ranked jobs in ``scope`` (worst class first, then cheapest)."""
    tenant = job.tenant
    # A job held back by its tenant's quota can only make room by displacing its own.
    own_only = work.outcome.get(job.id) == _Outcome.QUOTA
    borrowed: dict[tuple[str, str], int] = {}

    def eligible(run: RunningJob) -> bool:
        if run_class[run.job.id] <= klass:
            return False
        if run.job.tenant == tenant:
            return True
        if own_only:
            return False
        if scope == RankPreemption.ANY:
            return True
        if scope == RankPreemption.BORROWED:
            gpu_type = work.state.nodes[work.state.index_of[run.placement[0].node]].gpu_type
            key = (run.job.tenant, gpu_type)
            amount = borrowed.get(key)
            if amount is None:  # usage is fixed while candidates are chosen
                amount = borrowed[key] = _borrowed(work, run.job.tenant, gpu_type)
            return amount >= run.job.total_gpu_milli
        return False

    if scope == RankPreemption.ANY and not own_only:
        pool = list(work.running)
    else:
        # Only the tenant's own jobs can be eligible, and with BORROWED also those of
        # tenants not below their guarantee on some GPU type.
        if work.running_of_tenant is None:
            work.running_of_tenant = {}
            for job_id, run in work.running.items():
                work.running_of_tenant.setdefault(run.job.tenant, []).append(job_id)
        borrowing = scope == RankPreemption.BORROWED and not own_only
        pool = [
            k
            for t, ids in work.running_of_tenant.items()
            if t == tenant or (borrowing and any(_borrowed(work, t, g) >= 0 for g in work.capacity))
            for k in ids
            if k in work.running
        ]
    # Victims are built only for eligible jobs: usually few of those running.
    candidates = [
        v
        for job_id in pool
        if eligible(work.running[job_id]) and (v := _victim(work, job_id)) is not None
    ]
    # Worst class first, then cheapest (costs are unique, so the order is total).
    worst_first = work.worst_first_of
    for c in {run_class[v.job_id] for v in candidates}:
        if c not in worst_first:
            worst_first[c] = _worst_first(c)
    candidates.sort(key=lambda v: (worst_first[run_class[v.job_id]], v.cost))
    if not candidates:
        return False
    if own_only:
        return _preempt_own_for_quota(work, job, candidates)
    types = _types_of(work, job)
    plan = find_victims_by_node(
        work.state,
        job,
        candidates,
        lambda: place_job(work.state, job, work.profile.placement),
        need_milli=job.total_gpu_milli,
        free_milli=sum(work.free.get(t, 0) for t in types),
    )
    if plan is None or not plan[0]:
        return False  # fitting without victims is left to the final pass
    victims, placement = plan
    if not _quota_allows_after(work, tenant, placement, victims):
        return False
    for v in victims:
        reason = PreemptReason.PRIORITY if v.tenant == tenant else PreemptReason.FAIR_SHARE
        _evict(work, v, reason, job.id)
    _commit_start(work, job, placement)
    return True


def _preempt_own_for_quota(work: _Work, job: Job, candidates: list[Victim]) -> bool:
    """Free enough of the tenant's own quota (worst-ranked first), then place the job."""
    types = _types_of(work, job)
    excess = min(
        work.usage.get((job.tenant, t), 0) + job.total_gpu_milli - _limit(work, job.tenant, t)
        for t in types
    )
    taken: list[Victim] = []
    freed = 0
    for v in candidates:
        if freed >= excess:
            break
        taken.append(v)
        freed += v.gpu_milli
    if freed < excess:
        return False
    cp = work.state.checkpoint()
    try:
        for v in taken:
            work.state.release(v.job_id)
        placement = place_job(work.state, job, work.profile.placement)
    finally:
        work.state.rollback(cp)
    if placement is None or not _quota_allows_after(work, job.tenant, placement, taken):
        return False
    for v in taken:
        _evict(work, v, PreemptReason.PRIORITY, job.id)
    _commit_start(work, job, placement)
    return True


def _quota_allows_after(
    work: _Work, tenant: str, placement: Placement, victims: Sequence[Victim]
) -> bool:
    """Whether ``tenant`` may hold ``placement`` once ``victims`` are gone: within its
    limit, and, where it then borrows, within what its cohort may borrow."""
    freed: dict[str, int] = {}
    for v in victims:
        if v.tenant == tenant:
            for t, milli in _taken_by(work, v.placement).items():
                freed[t] = freed.get(t, 0) + milli
    taken = _taken_by(work, placement)
    after = {t: work.usage.get((tenant, t), 0) - freed.get(t, 0) + a for t, a in taken.items()}
    if any(used > _limit(work, tenant, t) for t, used in after.items()):
        return False
    borrows = any(used > _guarantee(work, tenant, t) for t, used in after.items())
    return not borrows or _may_borrow_after(work, tenant, taken, victims)


def _taken_by(work: _Work, placement: Placement) -> dict[str, int]:
    taken: dict[str, int] = {}
    for rp in placement:
        t = _node_type(work, rp.node)
        taken[t] = taken.get(t, 0) + rp.gpu_milli * len(rp.gpu_indices)
    return taken


def _worst_first(klass: Rank) -> tuple:
    """Sort key putting the worst (largest) class first, then the victim's cost."""
    return tuple(-x if isinstance(x, (int, float)) else x for x in klass)


# -- 7. reasons ----------------------------------------------------------------

_REASON = {
    _Outcome.QUOTA: (PendingReason.QUOTA_EXCEEDED, "starting it would exceed the tenant's quota"),
    _Outcome.NO_FIT: (PendingReason.NO_FIT, "no placement fits right now"),
    _Outcome.BLOCKED: (
        PendingReason.BLOCKED_BY_RESERVATION,
        "it would fit, but would delay a job holding a reservation",
    ),
    _Outcome.NEVER: (PendingReason.NEVER_FITS, "no ready node of its GPU types is large enough"),
}


def _close(work: _Work) -> CycleResult:
    reserved = {r.job_id: r.start_s for r in work.reservations}
    waiting = {j.id for j in work.waiting_guarantee}
    pending: list[Pending] = []
    if not work.snap.explain:
        for job in work.waiting_guarantee:
            if work.outcome.get(job.id) != _Outcome.STARTED:
                pending.append(
                    Pending(
                        job.id,
                        PendingReason.WAITING_FOR_GUARANTEE,
                        "within its guarantee; waiting for borrowed capacity to return",
                        reserved.get(job.id),
                    )
                )
        return CycleResult(
            preemptions=tuple(work.preempts), starts=tuple(work.starts), pending=tuple(pending)
        )
    for queue in work.queues.values():
        ahead: float | None = None
        for job in queue:
            outcome = work.outcome.get(job.id)
            if outcome == _Outcome.STARTED:
                continue
            if job.id in reserved:
                ahead = reserved[job.id]
            if job.id in waiting:
                pending.append(
                    Pending(
                        job.id,
                        PendingReason.WAITING_FOR_GUARANTEE,
                        "within its guarantee; waiting for borrowed capacity to return",
                        ahead,
                    )
                )
            elif job.id in reserved:
                pending.append(
                    Pending(job.id, PendingReason.RESERVED, "capacity is held for it", ahead)
                )
            elif outcome is None:
                pending.append(
                    Pending(
                        job.id, PendingReason.QUEUED, "behind earlier jobs of its tenant", ahead
                    )
                )
            else:
                reason, message = _REASON[outcome]
                pending.append(Pending(job.id, reason, message, ahead))
    pending.sort(key=lambda p: work.ranks[p.job_id])
    return CycleResult(
        preemptions=tuple(work.preempts), starts=tuple(work.starts), pending=tuple(pending)
    )
