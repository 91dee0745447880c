"""Finding victims, separate from evicting them.

``find_victims`` removes candidates one by one inside a ``ClusterState``
checkpoint until the job fits, puts back every victim that turns out not to be
needed (most expensive first), and rolls the state back: the caller gets a plan
and decides whether to carry it out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mosu.core.models import GPU_MILLI, Job, Placement, RunningJob
from mosu.engine.state import ClusterState


@dataclass(frozen=True, slots=True)
class Victim:
    job_id: str
    tenant: str
    placement: Placement
    gpu_milli: int
    cost: tuple[float | str, ...]
    """Sort key: cheaper victims first."""
    gpu_type: str = ""
    """The GPU type of its first replica's node (what its tenant's quota is charged)."""
    on_nodes: tuple[tuple[int, int], ...] = ()
    """(node index, whole GPUs it holds there), precomputed by the caller if known."""


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


def price_gpu_s(run: RunningJob, now: float, restart_overhead_s: float) -> float:
    """GPU-seconds a preemption at ``now`` costs: the work since the last checkpoint
    plus the restart, both times the job's GPUs."""
    gpus = run.job.total_gpu_milli / GPU_MILLI
    return (seconds_since_checkpoint(run, now) + restart_overhead_s) * gpus


def _take_any(v: Victim, taken: Sequence[Victim]) -> bool:
    return True


def find_victims(
    state: ClusterState,
    candidates: Sequence[Victim],
    fits: Callable[[], Placement | None],
    *,
    may_take: Callable[[Victim, Sequence[Victim]], bool] = _take_any,
    need_milli: int = 0,
    free_milli: int = 0,
    known: Callable[[bool], bool | None] | None = None,
) -> tuple[list[Victim], Placement] | None:
    """The cheapest set of ``candidates`` (already in cost order) whose removal lets
    ``fits()`` return a placement, with that placement; None if none does.

    ``may_take(v, taken)`` can refuse a candidate given those already taken (for
    example to keep a lender's usage at its guarantee). ``need_milli`` and
    ``free_milli`` let the search skip placement attempts while too little is free.
    ``known(settle)`` says, without searching, whether ``fits()`` would return a
    placement when counts alone tell and the search would change nothing ``fits()``
    reads but what ``known`` may change itself as the search would have, if
    ``settle`` (None otherwise): the search then calls ``fits()`` only for the
    placement it returns.
    """
    if free_milli >= need_milli and (known is None or known(True) is not False):
        placement = fits()
        if placement is not None:
            return [], placement
    cp = state.checkpoint()
    try:
        taken: list[Victim] = []
        placement = None
        free = free_milli
        for v in candidates:
            if not may_take(v, taken):
                continue
            state.release(v.job_id)
            taken.append(v)
            free += v.gpu_milli
            if free < need_milli or (known is not None and known(True) is False):
                continue
            placement = fits()
            if placement is not None:
                break
        if placement is None:
            return None
        # Fill back: keep a victim running if the job still fits without evicting it.
        kept: set[str] = set()
        unplaced = False
        """A victim was kept on ``known``'s word: ``placement`` is not yet where the
        job goes then, which is with the state as it is between victims, found with
        the policy as it is until ``fits()`` or ``known`` may change it."""
        for v in reversed(taken[:-1]):
            state.assign(v.job_id, v.placement)
            answer = None if known is None else known(not unplaced)
            if answer is False:
                state.release(v.job_id)
                continue
            if answer:
                kept.add(v.job_id)
                unplaced = True
                continue
            if unplaced:
                # Placed before ``fits()`` is next called, as it would have been.
                state.release(v.job_id)
                placement = fits()
                state.assign(v.job_id, v.placement)
                unplaced = False
            again = fits()
            if again is None:
                state.release(v.job_id)
            else:
                kept.add(v.job_id)
                placement = again
        if unplaced:
            placement = fits()
        if placement is None:  # ``known`` said it fits, so this is never the case
            return None
        return [v for v in taken if v.job_id not in kept], placement
    finally:
        state.rollback(cp)


def find_victims_by_node(
    state: ClusterState,
    job: Job,
    candidates: Sequence[Victim],
    fits: Callable[[], Placement | None],
    *,
    may_take: Callable[[Victim, Sequence[Victim]], bool] = _take_any,
    need_milli: int = 0,
    free_milli: int = 0,
) -> tuple[list[Victim], Placement] | None:
    """Like ``find_victims``, but plans node by node: for each replica, the node whose
    cheapest victims free enough whole GPUs at the least cost. Evicting the cheapest
    jobs cluster-wide rarely empties any one node, so a gang would take many victims.
    Falls back to ``find_victims`` for fractional or CPU-only shapes."""
    shape = job.shape
    per_replica = shape.gpus
    if per_replica == 0 or shape.gpu_milli != GPU_MILLI:
        return find_victims(
            state, candidates, fits, may_take=may_take, need_milli=need_milli, free_milli=free_milli
        )
    if free_milli >= need_milli:
        placement = fits()
        if placement is not None:
            return [], placement
    take_any = may_take is _take_any  # skip building the taken list it would ignore
    by_node: dict[int, list[tuple[Victim, int]]] = {}
    for v in candidates:
        held = v.on_nodes or on_nodes(state, v.placement)
        for i, gpus in held:
            by_node.setdefault(i, []).append((v, gpus))
    # A gang's replicas may go to free nodes too, at no cost: planned on victims' nodes
    # alone it would evict for every replica, or find no plan with too few of them.
    looked_at = sorted(set(by_node).union(free_nodes(state, job))) if job.replicas > 1 else None
    taken: list[Victim] = []
    taken_ids: set[str] = set()
    claimed: dict[int, int] = {}
    for _ in range(job.replicas):
        best: tuple[tuple[tuple[float | str, ...], int], int, list[Victim], int] | None = None
        for i in sorted(by_node) if looked_at is None else looked_at:
            node = state.nodes[i]
            if not state.schedulable[i] or node.gpus < per_replica or not job.allows(node.gpu_type):
                continue
            have = state.full_free[i] - claimed.get(i, 0)
            here = by_node.get(i, ())
            if have + sum(g for _, g in here) < per_replica:
                continue  # even evicting everything here would not make room
            plan: list[Victim] = []
            for v, gpus in here:
                if have >= per_replica:
                    break
                if v.job_id in taken_ids:
                    continue  # its GPUs here are already counted as freed
                if not take_any and not may_take(v, [*taken, *plan]):
                    continue
                plan.append(v)
                have += gpus
            if have < per_replica:
                continue
            # The plan whose dearest victim is cheapest, then the fewest victims.
            key = (max((v.cost[:-1] for v in plan), default=()), len(plan))
            if best is None or key < best[0]:
                best = (key, i, plan, have)
        if best is None:
            return None
        _, i, plan, _ = best
        take_node_plan(state, plan, i, per_replica, taken, taken_ids, claimed)
    placement = fits_without(state, taken, fits)
    if placement is None:
        return find_victims(
            state, candidates, fits, may_take=may_take, need_milli=need_milli, free_milli=free_milli
        )
    return taken, placement


def free_nodes(state: ClusterState, job: Job) -> list[int]:
    """The nodes with room for one of ``job``'s replicas as they are, in index order
    (eligibility for the job is checked where they are used)."""
    return np.flatnonzero(state.cols.full_free >= job.shape.gpus).tolist()


def take_node_plan(
    state: ClusterState,
    plan: Sequence[Victim],
    node: int,
    per_replica: int,
    taken: list[Victim],
    taken_ids: set[str],
    claimed: dict[int, int],
) -> None:
    """Commit one replica's plan on ``node``: its victims taken, the GPUs they free on
    other nodes no longer counted there, ``per_replica`` GPUs claimed on ``node``."""
    for v in plan:
        taken.append(v)
        taken_ids.add(v.job_id)
        for rp in v.placement:
            j = state.index_of[rp.node]
            claimed[j] = claimed.get(j, 0) - len(rp.gpu_indices)
    claimed[node] = claimed.get(node, 0) + per_replica


def fits_without(
    state: ClusterState, taken: Sequence[Victim], fits: Callable[[], Placement | None]
) -> Placement | None:
    """Where the job would go with ``taken`` released (the state is left as it was)."""
    cp = state.checkpoint()
    try:
        for v in taken:
            state.release(v.job_id)
        return fits()
    finally:
        state.rollback(cp)


def on_nodes(state: ClusterState, placement: Placement) -> tuple[tuple[int, int], ...]:
    on_node: dict[int, int] = {}
    for rp in placement:
        i = state.index_of[rp.node]
        on_node[i] = on_node.get(i, 0) + len(rp.gpu_indices)
    return tuple(on_node.items())
