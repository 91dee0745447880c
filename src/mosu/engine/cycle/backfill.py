"""Preemptible backfill taken back: a blocked gang starts by preempting the cheap
jobs that may run on capacity held for it.

With ``backfill_loss_gpu_s`` set, a job whose preemption can lose little (its GPUs
times its checkpoint interval, else its estimate, plus a restart) may start on nodes
held for a gang of at least ``backfill_gang_gpus`` GPUs although it would still run
at the gang's planned start (``starting.try_start``). The gang pays for that only
when it could start: here, each time it is found blocked, it looks for the cheapest
set of such jobs, wherever they run, whose preemption lets it start now. A victim
loses at most what it may lose to be backfill, runs its first attempt (so no job is
taken back twice), its tenant keeps its guarantee, and
the plan is priced as any other (``pricing.worth_preempting``). Victims are taken at
their next checkpoints when the gang's GPUs left idle until then (those the victims
do not hold) cost less than the work they would lose now, by more than a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mosu.core.models import GPU_MILLI, Job
from mosu.core.reasons import PreemptReason
from mosu.engine.cycle.pricing import (
    CHECKPOINT_MARGIN_S,
    checkpoints_in_s,
    cost_after_gpu_s,
    plan_cost_gpu_s,
    wake_at,
    worth_preempting,
)
from mosu.engine.cycle.reservations import Avoiding
from mosu.engine.cycle.starting import commit_start, evict
from mosu.engine.cycle.victims import running_victims
from mosu.engine.cycle.work import (
    Work,
    borrowed_milli,
    guarantee,
    limit,
    may_borrow,
    types_of,
)
from mosu.engine.placement.base import fits_quietly, place_job
from mosu.engine.preemption import Victim, find_victims, price_gpu_s


def take_back(work: Work, job: Job, *, within_guarantee: bool) -> bool:
    """Start blocked gang ``job`` now by preempting preemptible backfill, if that is
    enough and priced worth it; whether it started. ``within_guarantee`` as for
    ``try_start``: the quota it must start within."""
    profile = work.profile
    most = profile.backfill_loss_gpu_s
    need = job.total_gpu_milli
    if most <= 0 or need < profile.backfill_gang_gpus * GPU_MILLI or not work.running:
        return False
    cap = guarantee if within_guarantee else limit
    usage = work.usage
    types = tuple(
        t
        for t in types_of(work, job)
        if usage.get((job.tenant, t), 0) + need <= cap(work, job.tenant, t)
        and (within_guarantee or may_borrow(work, job.tenant, t, need))
    )
    if not types:
        return False
    target = job if types == types_of(work, job) else replace(job, gpu_types=types)
    restart = profile.restart_overhead_s
    now = work.now
    candidates = [
        v
        for v in running_victims(work)
        if v.gpu_milli < need
        and v.gpu_type in types
        and not (run := work.running[v.job_id]).attained_gpu_s
        and run.job.priority <= job.priority
        and price_gpu_s(run, now, restart) <= most
    ]
    free = sum(work.free.get(t, 0) for t in types)
    if free + sum(v.gpu_milli for v in candidates) < need:
        return False
    # Its tenant's own jobs may go; another tenant's only while it stays above its
    # guarantee.
    borrowed: dict[tuple[str, str], int] = {}
    # What ``taken`` frees per (tenant, GPU type), kept as the search's list grows
    # (it only appends), instead of summed over the whole list for each candidate.
    gone: dict[tuple[str, str], int] = {}
    gone_of: Sequence[Victim] | None = None
    counted = 0
    """The list ``gone`` sums, and how many of its victims it has counted."""

    def may_take(v: Victim, taken: Sequence[Victim]) -> bool:
        nonlocal gone_of, counted
        if v.tenant == job.tenant:
            return True
        key = (v.tenant, v.gpu_type)
        if key not in borrowed:
            borrowed[key] = borrowed_milli(work, v.tenant, v.gpu_type)
        if gone_of is not taken or counted > len(taken):
            gone.clear()
            gone_of, counted = taken, 0
        for t in taken[counted:]:
            k = (t.tenant, t.gpu_type)
            gone[k] = gone.get(k, 0) + t.gpu_milli
        counted = len(taken)
        return borrowed[key] - gone.get(key, 0) >= v.gpu_milli

    # Other reservations' nodes stay out of reach, as for any start.
    held = frozenset().union(*(r.nodes for r in work.reservations if r.job_id != job.id))
    policy = Avoiding(profile.placement, held) if held else profile.placement
    held_ids = sorted(held)
    plan = find_victims(
        work.state,
        candidates,
        lambda: place_job(work.state, target, policy),
        may_take=may_take,
        need_milli=need,
        free_milli=free,
        known=lambda settle: fits_quietly(
            work.state, target, profile.placement, held_ids, settle=settle
        ),
    )
    if plan is None:
        return False
    victims, placement = plan
    if not victims or not worth_preempting(work, job, victims):
        return False
    later = _at_checkpoints_s(work, job, victims)
    if later is not None:
        wake_at(work, later)
        return False
    for v in victims:
        evict(work, v, PreemptReason.BACKFILL, job.id)
    commit_start(work, job, placement)
    return True


def _at_checkpoints_s(work: Work, job: Job, victims: Sequence[Victim]) -> float | None:
    """When to take ``victims`` back at their next checkpoints instead of now, if that
    is cheaper: meanwhile they keep running on what the gang would take, so only the
    rest of the gang's GPUs (free now) idle. None: take them now."""
    wait = checkpoints_in_s(work, victims)
    if wait is None:
        return None
    taken = sum(v.gpu_milli for v in victims)
    idle = max(0, job.total_gpu_milli - taken) / GPU_MILLI * wait
    # Waiting must save more than a restart of the victims, or a cycle just after
    # their checkpoints would wait for the next ones.
    saved = plan_cost_gpu_s(work, victims) - cost_after_gpu_s(work, victims, wait) - idle
    if saved <= work.profile.restart_overhead_s * taken / GPU_MILLI:
        return None
    return work.now + wait + CHECKPOINT_MARGIN_S
