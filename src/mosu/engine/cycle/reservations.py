"""Backfill reservations: holding capacity for a blocked job from the earliest time
it can start, and keeping later jobs off the nodes held for it."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from mosu.core.models import GPU_MILLI, Job, RunningJob, Shape
from mosu.engine.cycle.work import INF, Outcome, Reservation, Work, types_of
from mosu.engine.placement.base import Candidates, PlacementPolicy, place_job
from mosu.engine.state import ClusterState


@dataclass(frozen=True, slots=True)
class Avoiding:
    """Placement that refuses a set of nodes (those held for reservations)."""

    inner: PlacementPolicy
    avoid: frozenset[int]
    name: str = "avoiding"

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        allowed = [i for i in candidates if i not in self.avoid]
        return self.inner.select(state, shape, allowed) if allowed else None

    def reserve_node(
        self, state: ClusterState, candidates: Sequence[int], gpu_free: Mapping[int, Sequence[int]]
    ) -> int | None:
        allowed = [i for i in candidates if i not in self.avoid]
        return self.inner.reserve_node(state, allowed, gpu_free) if allowed else None

    def alike(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> Sequence[int] | None:
        allowed = [i for i in candidates if i not in self.avoid]
        return self.inner.alike(state, shape, allowed) if allowed else None

    def select_known(self, state: ClusterState, shape: Shape, i: int) -> tuple[int, ...]:
        return self.inner.select_known(state, shape, i)

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        return self.inner.quiet_for(state, taken_milli)

    def settle(self, state: ClusterState) -> None:
        self.inner.settle(state)

    def fingerprint(self) -> Hashable | None:
        inner = self.inner.fingerprint()
        return None if inner is None else (inner, self.avoid)

    def always_picks(self) -> bool:
        return False  # it declines the held nodes

    def keep(self) -> object | None:
        return self.inner.keep()

    def restore(self, kept: object) -> None:
        self.inner.restore(kept)

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        self.inner.learn(pending, running)


def _estimate(work: Work, job: Job) -> float:
    known = work.snap.estimate_of(job)
    return known if known is not None else work.profile.default_estimate_s


_NONE: frozenset[int] = frozenset()


def avoid_for(work: Work, job: Job) -> frozenset[int]:
    """Nodes held for reservations that ``job`` would still occupy when they begin."""
    if not work.reservations:
        return _NONE
    end = work.now + _estimate(work, job)
    # The answer depends on the job only through its end and whether it holds one of
    # the reservations: remembered until they change (``CycleMemo.invalidate``, which
    # every change calls; a new or resized list is caught here too).
    memo = work.memo
    if memo.avoid_for is not work.reservations or memo.avoid_len != len(work.reservations):
        memo.avoid_for = work.reservations
        memo.avoid_len = len(work.reservations)
        memo.avoid.clear()
        memo.avoid_holders = {r.job_id for r in work.reservations}
    key: float | tuple[float, str] = (end, job.id) if job.id in memo.avoid_holders else end
    found = memo.avoid.get(key)
    if found is None:
        nodes: set[int] = set()
        for r in work.reservations:
            if r.job_id != job.id and end > r.start_s:
                nodes |= r.nodes
        found = memo.avoid[key] = frozenset(nodes)
    return found


def expected_end_s(
    started_s: float, estimate_s: float, now: float, *, overruns: bool = True
) -> float:
    """When a job started at ``started_s`` is expected to end: at its estimate, or,
    once past it, after running as long again as it has run (``overruns``; else at
    once). Run times are heavy-tailed, and the longer a job has run the longer it
    likely runs (the rule start-time estimates follow,
    ``HistoryEstimator.runtime_after``). Taking an overrun gang to end at once
    planned the reservation of the gang waiting for its nodes for now, so no job
    could be backfilled onto them while they stayed held for hours."""
    end = started_s + estimate_s
    if end > now or not overruns:
        return max(end, now)
    return now + (now - started_s)


def worst_loss_gpu_s(work: Work, job: Job) -> float:
    """The most GPU-time a preemption of ``job`` can throw away once started: its GPUs
    times its checkpoint interval (else its whole estimated run), plus a restart."""
    run_s = _estimate(work, job)
    every = job.checkpoint_every_s
    if every is not None and every > 0:
        run_s = min(run_s, every)
    return (run_s + work.profile.restart_overhead_s) * job.total_gpu_milli / GPU_MILLI


def preemptible(work: Work, job: Job) -> bool:
    """Whether ``job`` may start as preemptible backfill (``backfill_loss_gpu_s``): a
    job that has already run (and so was preempted) may not, so none is taken back
    twice."""
    most = work.profile.backfill_loss_gpu_s
    return (
        most > 0
        and job.total_gpu_milli > 0
        and not work.snap.attained_gpu_s.get(job.id)
        and worst_loss_gpu_s(work, job) <= most
    )


def backfill_avoid(work: Work, job: Job) -> frozenset[int]:
    """``avoid_for`` for a preemptible job: the nodes of reservations too small to take
    their backfill back stay avoided; those of larger gangs do not."""
    end = work.now + _estimate(work, job)
    least = work.profile.backfill_gang_gpus * GPU_MILLI
    nodes: set[int] = set()
    for r in work.reservations:
        if r.job_id != job.id and end > r.start_s and r.need_milli < least:
            nodes |= r.nodes
    return frozenset(nodes)


def reserve(work: Work, job: Job) -> None:
    """Hold capacity for a blocked job from the earliest time it can start."""
    if len(work.reservations) >= work.profile.max_reservations:
        return
    if job.total_gpu_milli <= GPU_MILLI:
        return  # one GPU frees up with the next completion: nothing to protect
    if any(r.job_id == job.id for r in work.reservations):
        return
    failed_key = (job.dims, job.gpu_types, job.topology)
    if failed_key in work.memo.reserve_failed:
        return
    state = work.state
    now = work.now
    if work.memo.running_ends is None:
        default = work.profile.default_estimate_s
        estimate_of = work.snap.estimate_of
        fewest = work.profile.overrun_min_gpus
        least = INF if fewest is None else fewest * GPU_MILLI
        work.memo.running_ends = [
            (
                expected_end_s(
                    run.started_s,
                    d if (d := estimate_of(run.job)) is not None else default,
                    now,
                    overruns=run.job.total_gpu_milli >= least,
                ),
                k,
            )
            for k, run in work.running.items()
        ]
        work.memo.running_ends.sort()
    started = sorted((now + _estimate(work, j), k) for k, j in work.started_jobs.items())
    held = frozenset().union(*(r.nodes for r in work.reservations)) if work.reservations else None
    policy = work.profile.placement if held is None else Avoiding(work.profile.placement, held)
    types = types_of(work, job)
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
        for end, job_id in heapq.merge(work.memo.running_ends, started):
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
                # ``found`` excludes held nodes already, so ask the plain policy.
                best = work.profile.placement.reserve_node(state, found, shadow)
                if best is not None:
                    work.reservations.append(Reservation(job.id, end, frozenset((best,)), need))
                    work.outcome[job.id] = Outcome.NO_FIT
                    work.memo.invalidate(freed=False)
                    return
            for held_id in deferred:
                state.release(held_id)
            deferred.clear()
            shadow.clear()
            shadow_cpu_mem.clear()
            placement = place_job(state, job, policy)
            if placement is not None:
                nodes = frozenset(state.index_of[rp.node] for rp in placement)
                work.reservations.append(Reservation(job.id, end, nodes, need))
                work.outcome[job.id] = Outcome.NO_FIT
                work.memo.invalidate(freed=False)
                return
    finally:
        state.rollback(cp)
    work.memo.reserve_failed.add(failed_key)


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
