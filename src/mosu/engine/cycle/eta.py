"""Start-time estimates for jobs left pending, read after the cycle's decisions
(nothing here changes one).

A plan follows how the job will really get capacity:

- a job within its tenant's guarantee waiting for reclaim (``EtaBasis.RECLAIM``)
  gets borrowed capacity back as borrowers of other tenants pass the minimum
  runtime (plus the stop grace for them to stop), or as running jobs end, whichever
  comes first; its tenant's jobs waiting for their guarantee ahead of it go first;
- any other job (``EtaBasis.RELEASES``) waits for running jobs to end, by their
  estimated ends, until the capacity covers it and the jobs ranked ahead of it that
  compete for the same GPUs (its tenant's only, under static quotas), and its
  tenant's usage leaves room under its cap. A job behind a reservation is behind
  the reserved job's need, so it waits for it.

A running job's end is its start plus its runtime (``HistoryEstimator.runtime``:
the user's estimate, else history); one that has outrun its estimate is assumed to
run as long again as it has so far. A plan that needs a job whose runtime is
unknown is unknown: no number is invented. ``WaitSpread`` turns the planned wait
into a likely start and a late bound from how earlier plans held.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Container
from dataclasses import dataclass

from mosu.core.models import Job
from mosu.engine.cycle.work import (
    Outcome,
    Work,
    borrowed_milli,
    guarantee,
    limit,
    node_type,
    types_of,
)
from mosu.engine.estimates import EtaBasis, HistoryEstimator, StartEstimates
from mosu.engine.profiles import QuotaMode

INF = math.inf
MAX_SHADOW_AHEAD = 2_000
"""The most jobs ranked ahead that a shadow plays out: a bound on an estimate's cost.
Behind a longer queue the start is unknown."""


_PoolKey = tuple[str, tuple[str, ...]]
"""A pool of competitors: the tenant (under static quotas, else empty) and the GPU types."""


@dataclass(frozen=True, slots=True)
class StartEstimate:
    likely_s: float | None
    late_s: float | None
    planned_s: float | None
    basis: EtaBasis


_Hold = tuple[float, int, str, str, float]
"""Capacity a running job holds on one GPU type, and when it gives it back: (estimated
end, GPU milli, tenant, GPU type, when reclaim may take it: its minimum runtime passed)."""


_UNKNOWN = {basis: StartEstimate(None, None, None, basis) for basis in EtaBasis}


class StartPlanner:
    """Estimates for one cycle's pending jobs; what every estimate shares is built once."""

    def __init__(self, work: Work, estimates: StartEstimates | None) -> None:
        self.work = work
        self.estimates = estimates if estimates is not None else StartEstimates()
        self._holds: list[_Hold] | None = None
        self._ahead: dict[str, int] | None = None
        self._pools: dict[_PoolKey, list[Job]] | None = None
        # Each pending job's pool and its place there (``_place_in_pool``), in two maps:
        # one pair per job would be 100,000 objects more at a large queue. Only jobs
        # at most ``MAX_SHADOW_AHEAD`` from the head of their pool are in them (the
        # near ones): behind, no plan is made, so nothing is kept.
        self._pool_of: dict[str, _PoolKey] = {}
        self._index: dict[str, int] = {}
        self._shadows: dict[tuple[_PoolKey, str | None], _Shadow] = {}
        self._holds_of: dict[tuple[str, ...], list[tuple[float, int, str]]] = {}
        self._entry_cache: dict[_PoolKey, list[tuple[int, str, float]]] = {}
        self._by_reclaimable: list[_Hold] | None = None
        self._reclaims: dict[tuple[tuple[str, ...], str | None], tuple[list[float], list[int]]] = {}

    def runtime(self, job: Job) -> float | None:
        return self._runtimes.runtime(job, self.estimates.user_estimate(job))

    @property
    def _runtimes(self) -> HistoryEstimator:
        return self.estimates.runtimes

    # -- what the plans share ------------------------------------------------------

    def holds(self) -> list[_Hold]:
        """Every running (or just started) job's capacity by type, by estimated end."""
        if self._holds is None:
            work = self.work
            now = work.now
            min_runtime = work.profile.min_runtime_s
            only = work.state.gpu_types[0] if len(work.state.gpu_types) == 1 else None
            starts = {s.job_id: s.placement for s in work.starts}
            runs = [(run.job, run.placement, run.started_s) for run in work.running.values()]
            runs += [(job, starts[k], now) for k, job in work.started_jobs.items() if k in starts]
            holds: list[_Hold] = []
            for job, placement, started in runs:
                end = self._end(job, started, now)
                reclaimable = max(now, started + min_runtime)
                if only is not None:
                    holds.append((end, job.total_gpu_milli, job.tenant, only, reclaimable))
                    continue
                by_type: dict[str, int] = {}
                for rp in placement:
                    gpu_type = node_type(work, rp.node)
                    milli = rp.gpu_milli * len(rp.gpu_indices)
                    by_type[gpu_type] = by_type.get(gpu_type, 0) + milli
                for gpu_type, milli in sorted(by_type.items()):
                    holds.append((end, milli, job.tenant, gpu_type, reclaimable))
            holds.sort()
            self._holds = holds
        return self._holds

    def _end(self, job: Job, started: float, now: float) -> float:
        ran = max(0.0, now - started)
        runtime = self._runtimes.runtime_after(job, ran, self.estimates.user_estimate(job))
        return INF if runtime is None else now + max(0.0, runtime - ran)

    def guaranteed_ahead(self, job: Job) -> int:
        """GPU milli of the jobs of ``job``'s tenant waiting for their guarantee on the
        same GPU types and ranked ahead of it (``job`` waiting for its guarantee too)."""
        if self._ahead is None:
            work = self.work
            waiting = {j.id for j in work.waiting_guarantee}
            default = work.state.gpu_types
            outcome = work.outcome
            guaranteed: dict[tuple[str, tuple[str, ...]], int] = {}
            ahead: dict[str, int] = {}
            for j in work.ranked:
                if j.id not in waiting:
                    continue
                key = (j.tenant, j.gpu_types or default)
                ahead[j.id] = guaranteed.get(key, 0)
                if outcome.get(j.id) is not Outcome.STARTED:
                    guaranteed[key] = guaranteed.get(key, 0) + j.total_gpu_milli
            self._ahead = ahead
        return self._ahead.get(job.id, 0)

    def near(self) -> Container[str]:
        """The jobs with at most ``MAX_SHADOW_AHEAD`` ranked ahead in their pool: for
        any other a release plan is unknown (``estimate`` finds as much, one at a
        time)."""
        self._pools_by_key()
        return self._index

    # -- one job -------------------------------------------------------------------

    def estimate(self, job: Job, reason: str, *, reclaim: bool) -> StartEstimate:
        if reclaim:
            basis = EtaBasis.RECLAIM
            planned = self._plan_reclaim(job)
        else:
            basis = EtaBasis.RELEASES
            if self._pools is None:
                self._pools_by_key()
            if job.id not in self._index:
                return _UNKNOWN[basis]  # as ``_plan_releases`` finds, without the calls
            planned = self._plan_releases(job)
        if planned is None:
            return _UNKNOWN[basis]
        now = self.work.now
        extra = self.estimates.stop_grace_s if reclaim else 0.0
        spread = self.estimates.spread
        likely, late = spread.bounds(basis, reason, job.total_gpu_milli, planned - now)
        return StartEstimate(now + likely, now + late + extra, planned, basis)

    def _plan_releases(self, job: Job) -> float | None:
        """The time ``job`` starts in a shadow of the queue: the jobs ranked ahead of it
        that compete for its GPUs start in rank order as running jobs end (each then
        ending after its own runtime), then ``job``."""
        mode = self.work.profile.quotas
        placed = self._place_in_pool(job)
        if placed is None:
            return None  # a bound on the cost: unknown rather than a guess
        key, index = placed
        # The jobs ahead of a job are a prefix of its pool, so one shadow of the pool
        # gives every job its start as the shadow reaches it. The shadow depends on
        # whose cap it tracks: the pool's tenant under static quotas, each tenant of
        # the pool under borrowing, none in one shared pool, nor for a tenant without
        # a limit (then its cap never binds: its shadow is the pool's). A job its
        # tenant's cap can never hold gets None there.
        tenant: str | None = None
        if mode == QuotaMode.STATIC:
            tenant = key[0]
        elif mode == QuotaMode.BORROW and all(
            limit(self.work, job.tenant, t) != INF for t in key[1]
        ):
            tenant = job.tenant
        shadow = self._shadows.get((key, tenant))
        if shadow is None:
            shadow = self._shadows[(key, tenant)] = self._shadow(key, tenant)
        starts = shadow.starts
        if index >= len(starts) and not shadow.done:
            # Estimates come in rank order: play on well past this one, in few calls,
            # yet never more than twice as far as asked.
            upto = min(max(index, 2 * len(starts)), MAX_SHADOW_AHEAD)
            self._entries(key, upto + 1)
            shadow.play_to(upto)
        return starts[index] if index < len(starts) else None

    def _shadow(self, key: _PoolKey, tenant: str | None) -> _Shadow:
        work = self.work
        types = key[1]
        if tenant is None:
            cap = INF
        else:
            cap_of = guarantee if work.profile.quotas == QuotaMode.STATIC else limit
            cap = sum(cap_of(work, tenant, t) for t in types)
        used = 0 if tenant is None else sum(work.usage.get((tenant, t), 0) for t in types)
        free = sum(work.free.get(t, 0) for t in types)
        holds = self._holds_of.get(types)
        if holds is None:
            holds = [(end, milli, who) for end, milli, who, t, _ in self.holds() if t in types]
            self._holds_of[types] = holds
        # Holds come sorted by end: a heap as it is.
        ends = [(end, milli, who == tenant) for end, milli, who in holds]
        return _Shadow(self._entries(key, 0), tenant, cap, used, free, ends, work.now)

    def _entries(self, key: _PoolKey, n: int) -> list[tuple[int, str, float]]:
        """(GPU milli, tenant, runtime: inf if unknown) of at least the first ``n`` jobs
        of a pool (all, if fewer), worked out once for every shadow of the pool."""
        entries = self._entry_cache.setdefault(key, [])
        for other in self._pools_by_key()[key][len(entries) : n]:
            runtime = self.runtime(other)
            milli = other.total_gpu_milli
            entries.append((milli, other.tenant, INF if runtime is None else runtime))
        return entries

    def _place_in_pool(self, job: Job) -> tuple[_PoolKey, int] | None:
        """The pool of ``job``'s competitors (the pending jobs that want its GPU types;
        under static quotas, only its tenant's: the others hold their own partitions)
        and its place there: how many are ranked ahead of it. None when more than
        ``MAX_SHADOW_AHEAD`` are."""
        if self._pools is None:
            self._pools_by_key()
        index = self._index.get(job.id)
        return None if index is None else (self._pool_of[job.id], index)

    def _pools_by_key(self) -> dict[_PoolKey, list[Job]]:
        if self._pools is None:
            # One pass over the ranked queue: every pool in rank order, and each near
            # job's place in its pool. A pool is listed only as far as a shadow may
            # play (``MAX_SHADOW_AHEAD`` + 1 jobs): behind that every job is far, which
            # its pool's length, then fixed, tells.
            work = self.work
            static = work.profile.quotas == QuotaMode.STATIC
            default = work.state.gpu_types
            outcome = work.outcome
            pools: dict[_PoolKey, list[Job]] = {}
            pool_of: dict[str, _PoolKey] = {}
            place: dict[str, int] = {}
            most = MAX_SHADOW_AHEAD
            started = Outcome.STARTED
            # (tenant under static quotas, the job's own GPU types) -> its pool
            of: dict[tuple[str, tuple[str, ...]], tuple[_PoolKey, list[Job]]] = {}
            for other in work.ranked:
                found = of.get((other.tenant if static else "", other.gpu_types))
                if found is None:
                    key = (other.tenant if static else "", other.gpu_types or default)
                    found = of[(key[0], other.gpu_types)] = (key, pools.setdefault(key, []))
                key, pool = found
                index = len(pool)
                if index > most:
                    continue
                pool_of[other.id] = key
                place[other.id] = index
                if outcome.get(other.id) is not started:
                    pool.append(other)
            self._pools, self._pool_of, self._index = pools, pool_of, place
        return self._pools

    def _plan_reclaim(self, job: Job) -> float | None:
        work = self.work
        types = types_of(work, job)
        free = sum(work.free.get(t, 0) for t in types)
        to_free = self.guaranteed_ahead(job) + job.total_gpu_milli - free
        # Room enough, yet it did not start: it waits for at least the next change.
        to_free = max(to_free, 1)
        ats, freed = self._reclaim_events(types, job.tenant)
        k = bisect.bisect_left(freed, to_free)
        if k == len(ats) or ats[k] == INF:
            return None  # never enough, or only once a job of unknown end ends
        return ats[k]

    def _reclaim_events(self, types: tuple[str, ...], tenant: str) -> tuple[list[float], list[int]]:
        """When capacity of ``types`` comes back for a job of ``tenant`` waiting for its
        guarantee, in time order, and the GPU milli back by each time: every hold ends
        or, if its tenant (not ``tenant``) is still borrowing there, becomes
        reclaimable (the first ``borrowed`` milli of each lender's holds in reclaimable
        order). The same for every job whose tenant borrows none of ``types``."""
        work = self.work
        own = tenant if any(borrowed_milli(work, tenant, t) > 0 for t in types) else None
        key = (types, own)
        cached = self._reclaims.get(key)
        if cached is not None:
            return cached
        # Borrowed capacity, per lender and type, that reclaim may take back.
        lendable = {
            (who, t): max(0, borrowed_milli(work, who, t))
            for _, _, who, t, _ in self.holds()
            if who != own and t in types
        }
        if self._by_reclaimable is None:
            self._by_reclaimable = sorted(self.holds(), key=lambda h: (h[4], h[0]))
        events: list[tuple[float, int]] = []
        for end, milli, who, t, reclaimable in self._by_reclaimable:
            if t not in types:
                continue
            left = lendable.get((who, t), 0)
            if left > 0 and reclaimable < end:
                lendable[(who, t)] = left - milli
                events.append((reclaimable, milli))
            else:
                events.append((end, milli))
        events.sort()
        ats = [at for at, _ in events]
        freed = list(itertools.accumulate(milli for _, milli in events))
        self._reclaims[key] = (ats, freed)
        return ats, freed


class _Shadow:
    """One shadow of a pool (``entries``: GPU milli, tenant, runtime of its jobs in rank
    order), played out only as far as an estimate asks: its jobs start in rank order
    as running jobs end (``ends``, a heap of (end, GPU milli, the tenant's)), as the
    free capacity and ``tenant``'s cap allow, each then ending after its own runtime.
    ``starts`` holds, by place in the pool, each of ``tenant``'s jobs' start (every
    job's, for no tenant; None for another tenant's, or unknown). ``entries`` may grow
    between two estimates; ``done``: no job from here on has a known start."""

    __slots__ = ("at", "cap", "done", "ends", "entries", "free", "now", "starts", "tenant", "used")

    def __init__(
        self,
        entries: list[tuple[int, str, float]],
        tenant: str | None,
        cap: float,
        used: int,
        free: int,
        ends: list[tuple[float, int, bool]],
        now: float,
    ) -> None:
        self.entries = entries
        self.tenant = tenant
        self.cap = cap
        self.used = used
        self.free = free
        self.ends = ends
        self.now = now
        self.at = now
        self.starts: list[float | None] = []
        self.done = False

    def play_to(self, index: int) -> None:
        """Play on until the job at ``index`` (or the pool's end, if before) has its
        start."""
        tenant, cap, used, free, ends, now, at = (
            self.tenant,
            self.cap,
            self.used,
            self.free,
            self.ends,
            self.now,
            self.at,
        )
        starts = self.starts
        for need, who, runtime in self.entries[len(starts) : index + 1]:
            mine = who == tenant
            if mine and need > cap:
                starts.append(None)
                continue  # never starts: it holds nothing back
            while free < need or (mine and used + need > cap):
                if not ends or ends[0][0] == INF:
                    # What it waits for has no known end: nor has any job behind it.
                    self.done = True
                    return
                end, milli, own = heapq.heappop(ends)
                at = max(at, end)
                free += milli
                if own:
                    used -= milli
            if tenant is not None and not mine:
                starts.append(None)
            elif at == now:
                # Room enough, yet it did not start (where the room is, or a
                # reservation holding it): nothing changes before the next end.
                starts.append(None if not ends or ends[0][0] == INF else max(at, ends[0][0]))
            else:
                starts.append(at)
            free -= need
            if mine:
                used += need
            heapq.heappush(ends, (at + runtime, need, mine))
        self.used, self.free, self.at = used, free, at
