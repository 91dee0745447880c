"""The placement plugin contract and all-or-nothing gang placement.

A ``PlacementPolicy`` answers one question: among the nodes where one replica
fits, which one (and which GPUs on it)? ``place_job`` turns that into a whole
gang placement honouring the job's topology constraint, trying the tightest
layout first (one node, then one rack, then spread) and rolling back on failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from mosu.core.models import (
    GPU_MILLI,
    Job,
    Placement,
    ReplicaPlacement,
    RunningJob,
    Shape,
    Topology,
)
from mosu.engine.state import ClusterState

Candidates: TypeAlias = Sequence[int] | NDArray[np.int64]
"""Ascending indices of nodes where a shape fits: a list, or the int64 array of the
state's vector filter (``ClusterState.candidate_array``)."""


class PlacementPolicy(Protocol):
    """Chooses a node (and the GPU indices on it) for one replica."""

    @property
    def name(self) -> str: ...

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        """Pick from ``candidates`` (ascending indices of nodes where ``shape`` fits; a
        list or an int64 numpy array), or None to decline."""
        ...

    def reserve_node(
        self, state: ClusterState, candidates: Sequence[int], gpu_free: Mapping[int, Sequence[int]]
    ) -> int | None:
        """Backfill's shortcut for one whole-GPU replica: the node ``select`` would pick
        if ``candidates`` were the only nodes where it fits and each had the free GPU
        shares in ``gpu_free`` (jobs expected to end released in thought only), or None
        when the policy cannot tell without those releases made in ``state``."""
        ...

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        """Told, once per cycle before any placement, the jobs the cycle sees: a policy
        that weighs the task mix expected to arrive learns it from the live queue and
        recent history here."""
        ...


class PolicyHooks:
    """The hooks' defaults: no reservation shortcut (reservations release and place
    for real), nothing learned from the queue."""

    def reserve_node(
        self, state: ClusterState, candidates: Sequence[int], gpu_free: Mapping[int, Sequence[int]]
    ) -> int | None:
        return None

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        return None


def choose_gpus(state: ClusterState, i: int, shape: Shape) -> tuple[int, ...]:
    """Best-fit GPU indices on node ``i``: fully free GPUs for whole requests, the
    tightest partly used GPU for a fractional one (lowest index breaks ties)."""
    free = state.gpu_free[i]
    if shape.gpus == 0:
        return ()
    if shape.gpu_milli == GPU_MILLI:
        picked = [g for g, f in enumerate(free) if f == GPU_MILLI][: shape.gpus]
        return tuple(picked) if len(picked) == shape.gpus else ()
    best = -1
    for g, f in enumerate(free):
        if f >= shape.gpu_milli and (best < 0 or f < free[best]):
            best = g
    return (best,) if best >= 0 else ()


def replica(state: ClusterState, i: int, shape: Shape, gpus: tuple[int, ...]) -> ReplicaPlacement:
    return ReplicaPlacement(
        node=state.nodes[i].name,
        gpu_indices=gpus,
        gpu_milli=shape.gpu_milli if shape.gpus else 0,
        cpu_milli=shape.cpu_milli,
        mem_mib=shape.mem_mib,
    )


def place_job(state: ClusterState, job: Job, policy: PlacementPolicy) -> Placement | None:
    """An all-or-nothing placement for ``job``, or None; ``state`` is left unchanged."""
    if job.replicas == 1:
        return _place_spread(state, job, policy, None)
    placement = _place_same_node(state, job, policy)
    if placement is not None or job.topology == Topology.SAME_NODE:
        return placement
    placement = _place_same_rack(state, job, policy)
    if placement is not None or job.topology == Topology.SAME_RACK:
        return placement
    return _place_spread(state, job, policy, None)


def _place_same_node(state: ClusterState, job: Job, policy: PlacementPolicy) -> Placement | None:
    shape = job.shape
    whole = Shape(
        gpus=shape.gpus * job.replicas,
        gpu_milli=shape.gpu_milli if shape.gpus else GPU_MILLI,
        cpu_milli=shape.cpu_milli * job.replicas,
        mem_mib=shape.mem_mib * job.replicas,
    )
    candidates = state.candidate_array(whole, job.gpu_types)
    if not len(candidates):
        return None
    choice = policy.select(state, whole, candidates)
    if choice is None:
        return None
    i, gpus = choice
    per = shape.gpus
    return tuple(
        replica(state, i, shape, tuple(gpus[k * per : (k + 1) * per])) for k in range(job.replicas)
    )


def _place_same_rack(state: ClusterState, job: Job, policy: PlacementPolicy) -> Placement | None:
    need = job.shape.gpus * job.replicas
    racks = sorted((free, rack) for rack, free in state.rack_free_gpus.items() if free >= need)
    for _, rack in racks:
        placement = _place_spread(state, job, policy, rack)
        if placement is not None:
            return placement
    return None


def _place_spread(
    state: ClusterState, job: Job, policy: PlacementPolicy, rack: str | None
) -> Placement | None:
    if job.replicas == 1 and rack is None:
        # One replica needs no what-if: choose it and leave the state alone.
        candidates = state.candidate_array(job.shape, job.gpu_types)
        choice = policy.select(state, job.shape, candidates) if len(candidates) else None
        return None if choice is None else (replica(state, choice[0], job.shape, choice[1]),)
    cp = state.checkpoint()
    placed: list[ReplicaPlacement] = []
    try:
        for k in range(job.replicas):
            candidates = state.candidate_array(job.shape, job.gpu_types)
            if rack is not None:
                candidates = candidates[[state.nodes[i].rack == rack for i in candidates.tolist()]]
            if not len(candidates):
                return None
            choice = policy.select(state, job.shape, candidates)
            if choice is None:
                return None
            i, gpus = choice
            rp = replica(state, i, job.shape, gpus)
            state.assign(f"{job.id}\x00{k}", (rp,))
            placed.append(rp)
        return tuple(placed)
    finally:
        state.rollback(cp)
