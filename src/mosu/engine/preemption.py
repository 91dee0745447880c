"""Finding victims, separate from evicting them.

``find_victims`` removes candidates one by one inside a ``ClusterState``
checkpoint until the job fits, puts back every victim that turns out not to be
needed (most expensive first), and rolls the state back: the caller gets a plan
and decides whether to carry it out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mosu.core.models import GPU_MILLI, Placement, RunningJob
from mosu.engine.state import ClusterState


@dataclass(frozen=True, slots=True)
class Victim:
    job_id: str
    tenant: str
    placement: Placement
    gpu_milli: int
    cost: tuple[float | str, ...]
    """Sort key: cheaper victims first."""


def seconds_since_checkpoint(run: RunningJob, now: float) -> float:
    """Work (in run seconds) a preemption at ``now`` would throw away."""
    if run.last_checkpoint_s is not None:
        return max(0.0, now - run.last_checkpoint_s)
    elapsed = max(0.0, now - run.started_s)
    every = run.job.checkpoint_every_s
    if every is None:
        return elapsed
    if every <= 0:
        return 0.0
    return elapsed % every


def lost_gpu_s(run: RunningJob, now: float) -> float:
    """GPU-seconds of work a preemption at ``now`` would throw away."""
    return seconds_since_checkpoint(run, now) * run.job.total_gpu_milli / GPU_MILLI


def find_victims(
    state: ClusterState,
    candidates: Sequence[Victim],
    fits: Callable[[], Placement | None],
    *,
    may_take: Callable[[Victim, Sequence[Victim]], bool] = lambda v, taken: True,
    need_milli: int = 0,
    free_milli: int = 0,
) -> tuple[list[Victim], Placement] | None:
    """The cheapest set of ``candidates`` (already in cost order) whose removal lets
    ``fits()`` return a placement, with that placement; None if none does.

    ``may_take(v, taken)`` can refuse a candidate given those already taken (for
    example to keep a lender's usage at its guarantee). ``need_milli`` and
    ``free_milli`` let the search skip placement attempts while too little is free.
    """
    if free_milli >= need_milli:
        placement = fits()
        if placement is not None:
            return [], placement
    cp = state.checkpoint()
    try:
        taken: list[Victim] = []
        placement: Placement | None = None
        free = free_milli
        for v in candidates:
            if not may_take(v, taken):
                continue
            state.release(v.job_id)
            taken.append(v)
            free += v.gpu_milli
            if free < need_milli:
                continue
            placement = fits()
            if placement is not None:
                break
        if placement is None:
            return None
        # Fill back: keep a victim running if the job still fits without evicting it.
        for v in reversed(taken[:-1]):
            state.assign(v.job_id, v.placement)
            again = fits()
            if again is None:
                state.release(v.job_id)
            else:
                taken.remove(v)
                placement = again
        return taken, placement
    finally:
        state.rollback(cp)
