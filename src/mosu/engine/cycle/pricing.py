"""Preemption priced in GPU-time: what a plan's victims would lose against what the
job they make room for gains.

A victim loses the work since its last checkpoint and pays a restart, both times its
GPUs (``preemption.price_gpu_s``). The waiting job gains its expected GPU-time run
now rather than later: its GPUs times its run-time estimate (the profile's default
when it has none). Rank preemption skips a plan that costs more than that, so a
gang of hundreds of GPUs is not stopped half an hour after its checkpoint for a job
of a few GPU-hours. Reclaim never asks: a guarantee owed is paid, at the cheapest
victims the profile's victim order finds.
"""

from __future__ import annotations

from collections.abc import Sequence

from mosu.core.models import GPU_MILLI, Job
from mosu.engine.cycle.work import Work
from mosu.engine.preemption import Victim, price_gpu_s, seconds_since_checkpoint


def expected_gain_gpu_s(work: Work, job: Job) -> float:
    """GPU-seconds ``job`` runs if started now: its GPUs times its estimated run time."""
    known = work.snap.estimate_of(job)
    estimate = known if known is not None else work.profile.default_estimate_s
    return estimate * job.total_gpu_milli / GPU_MILLI


def plan_cost_gpu_s(work: Work, victims: Sequence[Victim]) -> float:
    """GPU-seconds that preempting ``victims`` now throws away, restarts included."""
    restart = work.profile.restart_overhead_s
    return sum(price_gpu_s(work.running[v.job_id], work.now, restart) for v in victims)


def worth_preempting(work: Work, job: Job, victims: Sequence[Victim]) -> bool:
    """Whether preempting ``victims`` for ``job`` is allowed by the profile's pricing:
    always without it, else only when the job's gain covers the victims' cost."""
    if not work.profile.price_preemption or not victims:
        return True
    return plan_cost_gpu_s(work, victims) <= expected_gain_gpu_s(work, job)


def next_checkpoint_in_s(work: Work, victim: Victim) -> float | None:
    """Seconds until ``victim`` next checkpoints (None: it declares no interval)."""
    run = work.running[victim.job_id]
    every = run.job.checkpoint_every_s
    if every is None or every <= 0:
        return None
    return every - seconds_since_checkpoint(run, work.now) % every


def checkpoints_in_s(work: Work, victims: Sequence[Victim]) -> float | None:
    """Seconds until every one of ``victims`` has checkpointed at least once more."""
    waits = [next_checkpoint_in_s(work, v) for v in victims]
    if not waits or any(w is None for w in waits):
        return None
    return max(w for w in waits if w is not None)


def cost_after_gpu_s(work: Work, victims: Sequence[Victim], wait_s: float) -> float:
    """What preempting ``victims`` would throw away ``wait_s`` from now."""
    restart = work.profile.restart_overhead_s
    total = 0.0
    for v in victims:
        run = work.running[v.job_id]
        every = run.job.checkpoint_every_s or 0.0
        since = seconds_since_checkpoint(run, work.now) + wait_s
        if every > 0:
            since %= every
        total += (since + restart) * run.job.total_gpu_milli / GPU_MILLI
    return total


def defer_reclaim_s(work: Work, job: Job, victims: Sequence[Victim]) -> float | None:
    """The time to reclaim for ``job`` at the victims' next checkpoints instead of now,
    when that is the cheaper way to pay the guarantee (the job's GPUs idle meanwhile
    cost less than the work the victims would lose now) and comes within the
    profile's longest wait (``reclaim_wait_max_s``, or ``reclaim_wait_max_gpu_s`` of
    the job's GPUs idle). None: reclaim now."""
    profile = work.profile
    if not (profile.price_preemption and profile.reclaim_at_checkpoint) or not victims:
        return None
    least = profile.checkpoint_wait_min_gpus * GPU_MILLI
    if all(v.gpu_milli < least for v in victims):
        return None
    wait = checkpoints_in_s(work, victims)
    if wait is None or (
        wait > profile.reclaim_wait_max_s
        and wait * job.total_gpu_milli / GPU_MILLI > profile.reclaim_wait_max_gpu_s
    ):
        return None
    later = job.total_gpu_milli / GPU_MILLI * wait + cost_after_gpu_s(work, victims, wait)
    if later >= plan_cost_gpu_s(work, victims):
        return None
    return work.now + wait + CHECKPOINT_MARGIN_S


def cheaper_at_s(work: Work, job: Job, victims: Sequence[Victim]) -> float | None:
    """For a plan refused for its price: when its victims will all have checkpointed,
    if the job's gain covers their cost then (a time to look again), else None."""
    wait = checkpoints_in_s(work, victims)
    if wait is None or cost_after_gpu_s(work, victims, wait) > expected_gain_gpu_s(work, job):
        return None
    return work.now + wait + CHECKPOINT_MARGIN_S


CHECKPOINT_MARGIN_S = 1.0
"""A look again is asked this long after a checkpoint, so it falls after it."""


def wake_at(work: Work, time_s: float | None) -> None:
    """Ask the caller to run a cycle at ``time_s`` (the earliest asked wins)."""
    if time_s is not None and (work.wake_s is None or time_s < work.wake_s):
        work.wake_s = time_s
