"""Starting and evicting one job in the working state, with the usage and free
capacity bookkeeping both need; the over-quota shortcut for the rest of a queue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from mosu.core.models import Job, Placement
from mosu.core.reasons import PreemptReason
from mosu.engine.cycle.reservations import Avoiding, avoid_for, backfill_avoid, preemptible
from mosu.engine.cycle.work import (
    INF,
    Outcome,
    Work,
    guarantee,
    limit,
    may_borrow,
    node_type,
    queue_sizes,
)
from mosu.engine.decisions import Preempt, Start
from mosu.engine.placement.base import place_job
from mosu.engine.preemption import Victim


def _account(work: Work, tenant: str, placement: Placement, sign: int) -> None:
    """``placement`` taken (``sign`` +1) or given back (-1) by ``tenant``: its usage, its
    cohort's, and the free capacity per GPU type."""
    usage, free = work.usage, work.free
    for rp in placement:
        gpu_type = node_type(work, rp.node)
        milli = sign * rp.gpu_milli * len(rp.gpu_indices)
        key = (tenant, gpu_type)
        usage[key] = usage.get(key, 0) + milli
        free[gpu_type] -= milli
        if work.cohorts is not None:
            work.cohorts.add(tenant, gpu_type, milli)


def try_start(work: Work, job: Job, *, within_guarantee: bool) -> Outcome:
    """Start ``job`` now if quota, capacity and reservations allow."""
    # Called for most queued jobs in several phases: one GPU type (the common case)
    # and the size comparisons are spelled out rather than looped over.
    dims = job.dims
    need = dims[0] * dims[1] * dims[2]  # ``total_gpu_milli``, inline
    allowed = job.gpu_types or work.state.gpu_types
    memo = work.memo
    if need:
        tenant = job.tenant
        quota_key = (tenant, allowed, within_guarantee)
        if need >= memo.over_quota.get(quota_key, INF):
            return Outcome.QUOTA
        cap = guarantee if within_guarantee else limit
        usage = work.usage
        if len(allowed) == 1:
            only = allowed[0]
            fits = usage.get((tenant, only), 0) + need <= cap(work, tenant, only)
            types: tuple[str, ...] = allowed if fits else ()
        else:
            types = tuple(
                t for t in allowed if usage.get((tenant, t), 0) + need <= cap(work, tenant, t)
            )
        if not within_guarantee and work.cohorts is not None:
            types = tuple(t for t in types if may_borrow(work, tenant, t, need))
        if not types:
            memo.over_quota[quota_key] = need
            return Outcome.QUOTA
        gpus = dims[0]
        if len(types) == 1:
            if gpus > work.max_node_gpus.get(types[0], 0):
                return Outcome.NEVER
            if need > work.free.get(types[0], 0):
                return Outcome.NO_FIT
        else:
            if not any(gpus <= work.max_node_gpus.get(t, 0) for t in types):
                return Outcome.NEVER
            if need > sum(work.free.get(t, 0) for t in types):
                return Outcome.NO_FIT
    else:
        types = allowed
    avoid = avoid_for(work, job)
    target = job if types == allowed else replace(job, gpu_types=types)
    placement = _place(work, target, types, avoid)
    if placement is None and avoid and preemptible(work, job):
        # Preemptible backfill: nodes held for a large gang, which takes it back.
        fewer = backfill_avoid(work, job)
        if fewer != avoid:
            placement = _place(work, target, types, fewer)
    if placement is None:
        return Outcome.BLOCKED if avoid else Outcome.NO_FIT
    commit_start(work, job, placement)
    return Outcome.STARTED


def _place(
    work: Work, target: Job, types: tuple[str, ...], avoid: frozenset[int]
) -> Placement | None:
    """``target``'s placement off the nodes of ``avoid``; a failure is remembered."""
    memo = work.memo
    dims = target.dims
    key = (types, target.topology, avoid)
    failed = memo.no_fit.get(key)
    if failed:
        g, share, replicas, cpu, mem = dims
        for f in failed:
            if f[0] <= g and f[1] <= share and f[2] <= replicas and f[3] <= cpu and f[4] <= mem:
                return None
    policy = work.profile.placement if not avoid else Avoiding(work.profile.placement, avoid)
    placement = place_job(work.state, target, policy)
    if placement is None:
        memo.no_fit.setdefault(key, []).append(dims)
    return placement


def within_free(
    work: Work, jobs: Iterable[Job], *, within_guarantee: bool | None = None
) -> list[Job]:
    """The jobs of ``jobs`` that need no GPU or no more than is free of the GPU types
    they allow. As free capacity only shrinks until an eviction, ``try_start`` turns
    every other one down on counts alone, never placing it; what it may note then
    (that the job is over quota) any later call finds out by itself, so a pass of
    ``try_start`` over ``jobs`` without evictions may skip them. Given
    ``within_guarantee`` (the pass's), the jobs over quota are left out too: usage only
    grows until an eviction and caps are fixed, so ``try_start`` would find them over
    quota, noting only what a later call finds out by itself."""
    free = work.free
    everything = work.state.gpu_types
    room: dict[tuple[str, ...], int] = {(): sum(free.get(t, 0) for t in everything)}
    for types in {job.gpu_types for job in jobs if job.gpu_types}:
        room[types] = sum(free.get(t, 0) for t in types)
    if within_guarantee is None:
        return [
            job
            for job in jobs
            if (need := job.dims[0] * job.dims[1] * job.dims[2]) == 0 or need <= room[job.gpu_types]
        ]
    # The most a job of a tenant (and GPU types) may need and still be tried: the free
    # capacity of its types, and its room under the cap on the roomiest of them.
    cap = guarantee if within_guarantee else limit
    usage = work.usage
    most: dict[tuple[str, tuple[str, ...]], float] = {}

    def most_for(tenant: str, types: tuple[str, ...]) -> float:
        under = max(cap(work, tenant, t) - usage.get((tenant, t), 0) for t in types or everything)
        found = most[(tenant, types)] = min(room[types], under)
        return found

    kept = []
    for job in jobs:
        dims = job.dims
        need = dims[0] * dims[1] * dims[2]
        if need == 0:
            kept.append(job)
            continue
        key = (job.tenant, job.gpu_types)
        bound = most.get(key)
        if bound is None:
            bound = most_for(*key)
        if need <= bound:
            kept.append(job)
    return kept


def commit_start(work: Work, job: Job, placement: Placement) -> None:
    work.state.assign(job.id, placement)
    _account(work, job.tenant, placement, +1)
    work.started_jobs[job.id] = job
    work.starts.append(Start(job.id, placement))
    work.outcome[job.id] = Outcome.STARTED
    work.memo.invalidate(freed=False)
    if work.reservations:
        work.reservations = [r for r in work.reservations if r.job_id != job.id]


def evict(work: Work, victim: Victim, reason: PreemptReason, for_job: str) -> None:
    run = work.running.pop(victim.job_id)
    work.state.release(victim.job_id)
    _account(work, run.job.tenant, run.placement, -1)
    work.preempts.append(Preempt(victim.job_id, reason, for_job))
    work.preempted_tenant[victim.job_id] = run.job.tenant
    # Capacity grew: every remembered no-fit and every reservation planned on the
    # old state is stale; later phases plan afresh.
    work.memo.invalidate(freed=True)
    work.reservations.clear()


def rest_over_quota(
    work: Work, tenant: str, job: Job, start: int, *, within_guarantee: bool
) -> bool:
    """Whether every job from position ``start`` of ``tenant``'s queue is over quota,
    given that ``job`` (of that queue) just was: true when they allow the same GPU
    types and none needs less than the smallest need ``over_quota`` holds for them."""
    if start >= len(work.queues[tenant]):
        return True
    sizes = queue_sizes(work, tenant)
    if sizes is None:
        return False
    tail_need = sizes.tail_need
    allowed = job.gpu_types or work.state.gpu_types
    return tail_need[start] >= work.memo.over_quota.get((tenant, allowed, within_guarantee), INF)
