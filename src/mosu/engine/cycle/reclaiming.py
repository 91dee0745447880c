"""Phase 4, reclaim: a job within its tenant's guarantee that does not fit gets
borrowed capacity back, preempting the cheapest borrowed jobs of other tenants."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from mosu.core.models import Job, Topology
from mosu.core.reasons import PreemptReason
from mosu.engine.cycle.pricing import defer_reclaim_s, wake_at
from mosu.engine.cycle.starting import commit_start, evict, try_start
from mosu.engine.cycle.victim_index import VictimIndex
from mosu.engine.cycle.victims import preemptible_tenants, tenant_victims
from mosu.engine.cycle.work import (
    INF,
    Dims,
    Outcome,
    Work,
    borrowed_milli,
    dominant_share,
    guarantee,
    types_of,
)
from mosu.engine.placement.base import place_job
from mosu.engine.preemption import Victim


def reclaim(work: Work) -> None:
    # Usage is fixed while the order is taken: one dominant share per tenant.
    waiting = work.waiting_guarantee
    shares = {j.tenant: 0.0 for j in waiting}
    for tenant in shares:
        shares[tenant] = dominant_share(work, tenant)
    # By dominant share, then rank: the waiting jobs in rank order (a pass over the
    # ranked queue), then a stable sort by share alone.
    ids = {j.id for j in waiting}
    in_order = [j for j in work.ranked if j.id in ids] if len(ids) == len(waiting) else None
    if in_order is None or len(in_order) != len(waiting):  # (a job listed twice)
        ranks = work.ranks
        in_order = sorted(waiting, key=lambda j: ranks[j.id])
    in_order.sort(key=lambda j: shares[j.tenant])

    # The tenants with a job old enough to preempt as the round's first search
    # begins; their candidates are built per tenant on first need (``tenant_victims``).
    borrowers: _Borrowers | None = None
    # Sizes that found no reclaim this round, per (tenant, GPU types, topology): a
    # failure says nothing about another tenant's job, which has its own guarantee
    # and other lenders (the failing tenant's borrowed jobs are candidates for it).
    failed: dict[tuple[str, tuple[str, ...], Topology], list[Dims]] = {}
    # Sizes found dominated by ``failed``, which only grows this round: they stay so.
    dominated: set[tuple[str, tuple[str, ...], Topology, Dims]] = set()
    # Sizes put off (priced reclaim waits for checkpoints) since the working state last
    # changed: a job of the same tenant, size and constraints finds the same plan and
    # the same wait, so it is put off too without a search. Only a start or an
    # eviction changes the state, usage or the borrowers, and each appends to
    # ``work.starts`` or ``work.preempts``.
    deferred: set[tuple[str, tuple[str, ...], Topology, Dims]] = set()
    changes = (len(work.starts), len(work.preempts))
    outcome_of = work.outcome.get
    started = Outcome.STARTED
    over_quota = work.memo.over_quota
    everything = work.state.gpu_types
    for job in in_order:
        if outcome_of(job.id) is started:
            continue
        tenant = job.tenant
        dims = job.dims
        need = dims[0] * dims[1] * dims[2]
        # Over its guarantee as ``CycleMemo.over_quota`` has it: ``try_start`` would
        # say so and nothing more, and ``_reclaim_for`` would find no GPU type with
        # room in the guarantee: a failure.
        quota = need > 0 and need >= over_quota.get(
            (tenant, job.gpu_types or everything, True), INF
        )
        if not quota and try_start(work, job, within_guarantee=True) == started:
            continue
        key = (tenant, job.gpu_types, job.topology)
        same = (*key, dims)
        if same in dominated:
            continue
        if _dominated(dims, failed.get(key)):
            dominated.add(same)
            continue  # a smaller job of the same tenant already found no victims this round
        if quota:
            failed.setdefault(key, []).append(dims)
            continue
        now = (len(work.starts), len(work.preempts))
        if now != changes:
            deferred.clear()
            changes = now
        if same in deferred:
            continue
        if borrowers is None:
            borrowers = _Borrowers(work, preemptible_tenants(work))
        done = _reclaim_for(work, job, borrowers.now())
        if done is False:
            failed.setdefault(key, []).append(dims)
        elif done is None:  # put off
            deferred.add(same)


def _dominated(dims: Dims, smaller: list[Dims] | None) -> bool:
    """Whether some size of ``smaller`` is at most ``dims`` in every dimension."""
    if not smaller:
        return False
    g, share, replicas, cpu, mem = dims
    return any(
        f[0] <= g and f[1] <= share and f[2] <= replicas and f[3] <= cpu and f[4] <= mem
        for f in smaller
    )


class _Borrowers:
    """The tenants among ``tenants`` borrowing some GPU type, kept up to date cheaply:
    usage changes only with a start or an eviction, each of which appends to
    ``work.starts`` or ``work.preempts``, so only the tenants of the entries added
    since the last look are checked again."""

    def __init__(self, work: Work, tenants: Iterable[str]) -> None:
        self.work = work
        self.tenants = frozenset(tenants)
        self.starts = len(work.starts)
        self.preempts = len(work.preempts)
        self.current = frozenset(t for t in self.tenants if self._borrows(t))

    def _borrows(self, tenant: str) -> bool:
        return any(borrowed_milli(self.work, tenant, g) > 0 for g in self.work.capacity)

    def now(self) -> frozenset[str]:
        work = self.work
        if len(work.starts) == self.starts and len(work.preempts) == self.preempts:
            return self.current
        touched = {work.started_jobs[s.job_id].tenant for s in work.starts[self.starts :]}
        touched.update(work.preempted_tenant[p.job_id] for p in work.preempts[self.preempts :])
        self.starts, self.preempts = len(work.starts), len(work.preempts)
        touched &= self.tenants
        now = set(self.current)
        for tenant in touched:
            if self._borrows(tenant):
                now.add(tenant)
            else:
                now.discard(tenant)
        if now != self.current:
            self.current = frozenset(now)
        return self.current


def _reclaim_for(work: Work, job: Job, borrowing: frozenset[str]) -> bool | None:
    """Preempt the cheapest borrowed jobs of other tenants so ``job`` fits its guarantee.
    None when, with priced preemption, waiting for the victims' next checkpoints is the
    cheaper way to pay the guarantee: the cycle then asks to be woken then."""
    types = tuple(
        t
        for t in types_of(work, job)
        if work.usage.get((job.tenant, t), 0) + job.total_gpu_milli
        <= guarantee(work, job.tenant, t)
    )
    if not types:
        return False
    target = job if types == types_of(work, job) else replace(job, gpu_types=types)
    # ``borrowing``: the tenants with preemptible jobs above their guarantee on some
    # GPU type.
    if not borrowing - {job.tenant}:
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

    book = work.cohorts
    home = book.cohort(job.tenant) if book is not None else None

    def candidates() -> list[Victim]:
        # Borrowers of the job's own cohort go first (they run on its cohort's idle
        # guarantee), then jobs wholly on borrowed capacity: taking them leaves their
        # tenant at or above its guarantee.
        found = [v for t in sorted(borrowing) if t != job.tenant for v in tenant_victims(work, t)]
        if book is not None:  # the victim search compares costs, so the cohort goes in them
            found = [replace(v, cost=(book.cohort(v.tenant) != home, *v.cost)) for v in found]
        found.sort(key=lambda v: (borrowed_on(v) < v.gpu_milli, v.cost))
        return found

    def still_borrowed(v: Victim, taken: Sequence[Victim]) -> bool:
        # A victim's tenant must still be above its guarantee once earlier picks go.
        gone = sum(t.gpu_milli for t in taken if t.tenant == v.tenant)
        return borrowed_on(v) - gone > 0

    index = work.memo.victim_index
    if index is None or not index.covers(borrowing):
        index = work.memo.victim_index = VictimIndex(work, borrowing)
    # The same plan as ``find_victims_by_node`` over ``candidates()``, found by node.
    plan = index.find(
        job,
        borrowing=borrowing,
        borrowed_on=borrowed_on,
        home=home,
        fits=lambda: place_job(work.state, target, work.profile.placement),
        may_take=still_borrowed,
        need_milli=job.total_gpu_milli,
        free_milli=sum(work.free.get(t, 0) for t in types),
        candidates=candidates,
    )
    if plan is None:
        return False
    victims, placement = plan
    later = defer_reclaim_s(work, job, victims)
    if later is not None:
        wake_at(work, later)
        return None
    for v in victims:
        evict(work, v, PreemptReason.RECLAIM, job.id)
    commit_start(work, job, placement)
    return True


def _borrowed_on(work: Work, v: Victim) -> int:
    return work.usage.get((v.tenant, v.gpu_type), 0) - int(guarantee(work, v.tenant, v.gpu_type))
