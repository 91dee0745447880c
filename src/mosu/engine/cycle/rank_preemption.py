"""Phase 6, rank preemption: a better-ranked job displaces worse-ranked ones in the
profile's scope (its own tenant, borrowed capacity, or any)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import numpy as np

from mosu.core.models import GPU_MILLI, Job, Placement
from mosu.core.reasons import PreemptReason
from mosu.engine.cycle.pricing import cheaper_at_s, wake_at, worth_preempting
from mosu.engine.cycle.ranks import running_class_map
from mosu.engine.cycle.starting import commit_start, evict, try_start, within_free
from mosu.engine.cycle.victims import as_victim, running_of
from mosu.engine.cycle.work import (
    Outcome,
    Work,
    borrowed_milli,
    guarantee,
    limit,
    may_borrow_after,
    node_type,
    types_of,
)
from mosu.engine.ordering import Rank
from mosu.engine.placement.base import fits_unsearched, place_job
from mosu.engine.preemption import Victim, find_victims_by_node
from mosu.engine.profiles import QuotaMode, RankPreemption


def preempt_by_rank(work: Work) -> None:
    ordering = work.profile.ordering
    n = ordering.class_len
    scope = work.profile.rank_preemption
    outcome = work.outcome
    waiting = (Outcome.NO_FIT, Outcome.BLOCKED, Outcome.QUOTA)
    # The jobs still waiting, best rank first, read lazily: the walk usually stops
    # early. Only the job at hand can start in the walk, so the jobs ahead are
    # unchanged when reached.
    pending = (j for j in work.ranked if (o := outcome.get(j.id)) is None or o in waiting)
    first = next(pending, None)
    if first is None or not work.running:
        return
    best = work.ranks[first.id][:n]
    run_class = running_class_map(work)
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
    own_worst: dict[str, Rank | None] = {}
    """Tenant -> the worst class of its running jobs (None: it runs none)."""
    columns = _Columns()
    freed = False
    for job in itertools.chain((first,), pending):
        if freed and try_start(work, job, within_guarantee=True) == Outcome.STARTED:
            continue  # capacity an earlier preemption left over
        klass = work.ranks[job.id][:n]
        if klass >= worst or attempts >= work.profile.max_preemption_attempts:
            # Classes only grow along ``pending``, ``attempts`` only grows and
            # ``worst`` changes only with a preemption: no later job would act but by
            # starting in capacity an earlier preemption left over, which from here
            # only shrinks: only the jobs within it are worth a try.
            if freed:
                for later in within_free(work, list(pending), within_guarantee=True):
                    try_start(work, later, within_guarantee=True)
            break
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
        own_scope = scope == RankPreemption.TENANT or outcome.get(job.id) == Outcome.QUOTA
        if own_scope and tenant not in own_worst:
            own_worst[tenant] = max(
                (run_class[k] for k in running_of(work, tenant) if k in run_class),
                default=None,
            )
        if own_scope and not ((mine := own_worst[tenant]) is not None and mine > klass):
            done: bool | None = False
        else:
            done = _preempt_for(work, job, klass, run_class, scope, columns)
        if not done:
            if done is not None:
                # No victims. A plan refused for its price (None) says nothing about
                # a larger job of the tenant, which gains more.
                failed.setdefault(tenant, []).append((dims, klass))
                undominated.pop(tenant, None)
            continue
        freed = True
        own_worst = {}
        run_class = {k: v for k, v in run_class.items() if k in work.running}
        worst = max(run_class.values()) if run_class else klass
    if freed:  # what victims left over goes to guarantees first, then to borrowers
        # (jobs started in this phase are skipped below; no other outcome changed)
        rest = [j for j in work.ranked if outcome.get(j.id) != Outcome.NEVER]
        # With static partitions the limit is the guarantee: a second pass would
        # repeat the first on no more capacity.
        passes = (True,) if work.profile.quotas == QuotaMode.STATIC else (True, False)
        for within in passes:
            for job in within_free(work, rest, within_guarantee=within):
                if outcome.get(job.id) != Outcome.STARTED:
                    try_start(work, job, within_guarantee=within)


def _preempt_for(
    work: Work,
    job: Job,
    klass: Rank,
    run_class: dict[str, Rank],
    scope: RankPreemption,
    columns: _Columns,
) -> bool | None:
    """Displace worse-ranked jobs in ``scope`` (worst class first, then cheapest).
    False when no victims make room, None when the plan found costs more than the job
    gains (``pricing``)."""
    tenant = job.tenant
    # A job held back by its tenant's quota can only make room by displacing its own.
    own_only = work.outcome.get(job.id) == Outcome.QUOTA
    running = work.running
    spares = work.profile.rank_spares_gpus * GPU_MILLI
    # Eligible: ranked worse, and of the job's tenant, or (unless only its own may
    # go) of any tenant in scope ANY, of a tenant borrowing at least the job's GPUs
    # on its GPU type in scope BORROWED. Victims are built only for eligible jobs:
    # usually few of those running.
    if own_only or scope not in (RankPreemption.ANY, RankPreemption.BORROWED):
        # The tenant's own jobs alone: read from its own list, not all that run.
        candidates = []
        for job_id in running_of(work, tenant):
            if job_id not in running or not run_class[job_id] > klass:
                continue
            if spares > 0:
                d = running[job_id].job.dims
                if d[0] * d[1] * d[2] >= spares:  # ``total_gpu_milli``, inline
                    continue
            v = as_victim(work, job_id)
            if v is not None:
                candidates.append(v)
    else:
        if columns.cols is None:
            columns.cols = _RunningColumns(work)
        cols = columns.cols
        mask = cols.rank >= bisect.bisect_right(cols.classes, klass)
        own = cols.tenant == cols.tenant_ids.get(tenant, -1)
        if scope == RankPreemption.BORROWED:
            # Usage is fixed while candidates are chosen.
            amounts = np.array(
                [[borrowed_milli(work, t, g) for g in cols.type_names] for t in cols.tenant_names],
                dtype=np.int64,
            ).reshape(len(cols.tenant_names), len(cols.type_names))
            mask &= own | (amounts[cols.tenant, cols.gpu_type] >= cols.milli)
        if spares > 0:
            mask &= cols.milli < spares
        ids = cols.ids
        candidates = [
            v
            for k in np.flatnonzero(mask).tolist()
            if (job_id := ids[k]) in running and (v := as_victim(work, job_id)) is not None
        ]
    # Worst class first, then cheapest (costs are unique, so the order is total).
    worst_first = work.memo.worst_first_of
    for c in {run_class[v.job_id] for v in candidates}:
        if c not in worst_first:
            worst_first[c] = _worst_first(c)
    candidates.sort(key=lambda v: (worst_first[run_class[v.job_id]], v.cost))
    if not candidates:
        return False
    if own_only:
        return _preempt_own_for_quota(work, job, candidates)
    types = types_of(work, job)
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
    if not worth_preempting(work, job, victims):
        wake_at(work, cheaper_at_s(work, job, victims))
        return None
    if not _quota_allows_after(work, tenant, placement, victims):
        return False
    for v in victims:
        reason = PreemptReason.PRIORITY if v.tenant == tenant else PreemptReason.FAIR_SHARE
        evict(work, v, reason, job.id)
    commit_start(work, job, placement)
    return True


class _RunningColumns:
    """The jobs running as rank preemption starts, as columns: each one's class (its
    place among the distinct classes, ascending), tenant, GPU type and GPU milli. Jobs
    only leave from here on (filter by ``Work.running``)."""

    def __init__(self, work: Work) -> None:
        run_class = running_class_map(work)
        running = work.running
        # Its keys include every job still running: equal sizes mean equal sets.
        if len(run_class) == len(running):
            self.ids = list(run_class)
        else:
            self.ids = [k for k in run_class if k in running]
        ids = self.ids
        classes = [run_class[k] for k in ids]
        self.classes = sorted(set(classes))
        place = {c: k for k, c in enumerate(self.classes)}
        runs = [running[k] for k in ids]
        jobs = [run.job for run in runs]
        self.tenant_ids: dict[str, int] = {}
        for job in jobs:
            self.tenant_ids.setdefault(job.tenant, len(self.tenant_ids))
        self.tenant_names = list(self.tenant_ids)
        state = work.state
        if len(state.gpu_types) == 1:  # every placed job is on the one type
            only = state.gpu_types[0]
            types = [only if run.placement else "" for run in runs]
        else:
            types = [
                node_type(work, run.placement[0].node) if run.placement else "" for run in runs
            ]
        type_ids: dict[str, int] = {}
        for t in types:
            type_ids.setdefault(t, len(type_ids))
        self.type_names = list(type_ids)
        n = len(ids)
        tenant_ids = self.tenant_ids
        self.rank = np.fromiter((place[c] for c in classes), dtype=np.int64, count=n)
        self.tenant = np.fromiter((tenant_ids[j.tenant] for j in jobs), dtype=np.int64, count=n)
        self.gpu_type = np.fromiter((type_ids[t] for t in types), dtype=np.int64, count=n)
        # ``total_gpu_milli``, inline: gpus * share * replicas is 0 without GPUs too.
        self.milli = np.fromiter(
            (d[0] * d[1] * d[2] for d in (j.dims for j in jobs)), dtype=np.int64, count=n
        )


class _Columns:
    """``_RunningColumns``, built on the first search for victims."""

    cols: _RunningColumns | None = None


def _preempt_own_for_quota(work: Work, job: Job, candidates: list[Victim]) -> bool | None:
    """Free enough of the tenant's own quota (worst-ranked first), then place the job."""
    types = types_of(work, job)
    excess = min(
        work.usage.get((job.tenant, t), 0) + job.total_gpu_milli - limit(work, job.tenant, t)
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
    if not worth_preempting(work, job, taken):
        # Refused for its price wherever it would go: only whether it would fit once
        # they are gone (and its quota allows) says "no victims" from "look again".
        if not _fits_once_gone(work, job, taken):
            return False
        wake_at(work, cheaper_at_s(work, job, taken))
        return None
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
        evict(work, v, PreemptReason.PRIORITY, job.id)
    commit_start(work, job, placement)
    return True


def _fits_once_gone(work: Work, job: Job, victims: Sequence[Victim]) -> bool:
    """Whether ``job`` would be placed, within its quota, once ``victims`` are gone:
    from free capacity alone when that tells (``fits_unsearched``) and the job's GPUs
    are of one type, else by placing it."""
    state = work.state
    types = [t for t in types_of(work, job) if t in state.type_ids]
    if len(types) == 1:
        gone = (state.holdings[v.job_id] for v in victims)
        known = fits_unsearched(state, job, work.profile.placement, gone)
        if known is not None:
            taken = {types[0]: job.total_gpu_milli}
            return known and _quota_allows(work, job.tenant, taken, victims)
    cp = state.checkpoint()
    try:
        for v in victims:
            state.release(v.job_id)
        placement = place_job(state, job, work.profile.placement)
    finally:
        state.rollback(cp)
    return placement is not None and _quota_allows_after(work, job.tenant, placement, victims)


def _quota_allows_after(
    work: Work, tenant: str, placement: Placement, victims: Sequence[Victim]
) -> bool:
    """Whether ``tenant`` may hold ``placement`` once ``victims`` are gone: within its
    limit, and, where it then borrows, within what its cohort may borrow."""
    return _quota_allows(work, tenant, _taken_by(work, placement), victims)


def _quota_allows(
    work: Work, tenant: str, taken: dict[str, int], victims: Sequence[Victim]
) -> bool:
    """``_quota_allows_after`` for a placement taking ``taken`` GPU milli by type."""
    freed: dict[str, int] = {}
    for v in victims:
        if v.tenant == tenant:
            for t, milli in _taken_by(work, v.placement).items():
                freed[t] = freed.get(t, 0) + milli
    after = {t: work.usage.get((tenant, t), 0) - freed.get(t, 0) + a for t, a in taken.items()}
    if any(used > limit(work, tenant, t) for t, used in after.items()):
        return False
    borrows = any(used > guarantee(work, tenant, t) for t, used in after.items())
    return not borrows or may_borrow_after(work, tenant, taken, victims)


def _taken_by(work: Work, placement: Placement) -> dict[str, int]:
    taken: dict[str, int] = {}
    for rp in placement:
        t = node_type(work, rp.node)
        taken[t] = taken.get(t, 0) + rp.gpu_milli * len(rp.gpu_indices)
    return taken


def _worst_first(klass: Rank) -> Rank:
    """Sort key putting the worst (largest) class first, then the victim's cost."""
    return tuple(-x if isinstance(x, (int, float)) else x for x in klass)
