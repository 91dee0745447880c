"""The placement plugin contract and all-or-nothing gang placement.

A ``PlacementPolicy`` answers one question: among the nodes where one replica
fits, which one (and which GPUs on it)? ``place_job`` turns that into a whole
gang placement honouring the job's topology constraint, trying the tightest
layout first (one node, then one rack, then spread) and rolling back on failure.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Protocol, TypeAlias
from weakref import WeakKeyDictionary

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

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        """Whether ``select`` calls on ``state``, with up to ``taken_milli`` more GPU
        milli assigned than now, would leave the policy as it is (no random draw, no
        reweighing): then ``place_job`` may answer a gang it can prove does not fit
        without calling it, and later choices are the same either way."""
        ...

    def settle(self, state: ClusterState) -> None:
        """Change the policy as the next ``select`` call on ``state`` would before it
        chooses (a policy that reweighs by the free capacity reweighs here), so that
        ``quiet_for`` may then hold where it did not."""
        ...

    def fingerprint(self) -> Hashable | None:
        """What ``select``'s answers depend on besides the state's free capacity (equal
        fingerprints, equal answers on equal states), or None when that cannot be said
        (a random draw): ``place_job`` then remembers a gang's placement per state and
        fingerprint, and answers it again without calling ``select``, when the search
        left the fingerprint as it was."""
        ...

    def always_picks(self) -> bool:
        """Whether ``select`` picks one of any non-empty candidates (never declines):
        then whether a gang fits is known from free capacity alone (``fits_unsearched``)."""
        ...

    def keep(self) -> object | None:
        """What ``restore`` needs to bring the policy back to how it is now (None: it
        cannot): a search that changed the fingerprint is then remembered too, with
        what it left, and answered again by restoring that."""
        ...

    def restore(self, kept: object) -> None:
        """Bring the policy back to how it was when ``keep`` returned ``kept``."""
        ...

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        """Told, once per cycle before any placement, the jobs the cycle sees: a policy
        that weighs the task mix expected to arrive learns it from the live queue and
        recent history here."""
        ...

    def alike(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> Sequence[int] | None:
        """When ``select`` would not tell ``candidates`` apart by score and a replica
        it places leaves its node no room for another: the candidates in the order
        successive ``select`` calls take them, each taking the next as long as the
        state changes only by those replicas. None otherwise. The policy is changed as
        this ``select`` call would change it; ``select_known`` makes each call."""
        ...

    def select_known(self, state: ClusterState, shape: Shape, i: int) -> tuple[int, ...]:
        """``select``'s answer's GPUs when it takes node ``i`` from ``alike``'s order,
        with the changes that call makes to the policy."""
        ...


class PolicyHooks:
    """The hooks' defaults: no reservation shortcut (reservations release and place
    for real), no promise about what ``select`` changes in the policy (so every
    placement is searched), nothing learned from the queue."""

    def reserve_node(
        self, state: ClusterState, candidates: Sequence[int], gpu_free: Mapping[int, Sequence[int]]
    ) -> int | None:
        return None

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        return False

    def settle(self, state: ClusterState) -> None:
        return None

    def fingerprint(self) -> Hashable | None:
        return None

    def always_picks(self) -> bool:
        return False

    def keep(self) -> object | None:
        return None

    def restore(self, kept: object) -> None:
        return None

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        return None

    def alike(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> Sequence[int] | None:
        return None

    def select_known(self, state: ClusterState, shape: Shape, i: int) -> tuple[int, ...]:
        raise NotImplementedError(f"{type(self).__name__} never answers alike")


class StateOnly(PolicyHooks):
    """A policy whose ``select`` depends on the state alone and always picks one of
    its candidates: a gang that cannot fit is refused without a search, and a gang's
    placement is remembered per state."""

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        return True

    def fingerprint(self) -> Hashable | None:
        return ()

    def always_picks(self) -> bool:
        return True


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
    if not _may_fit(state, job, policy):
        return None
    before = policy.fingerprint()
    if before is None:
        return _place_gang(state, job, policy)
    memo = _MEMO.get(state)
    if memo is None:
        memo = _MEMO[state] = {}
    key = (state.content_hash, job.shape, job.replicas, job.gpu_types, job.topology, before)
    found = memo.get(key)
    if found is not None:
        placement, after, kept = found
        if after != before:
            policy.restore(kept)  # what the search left in the policy
        return placement
    placement = _place_gang(state, job, policy)
    after = policy.fingerprint()
    kept = None if after == before else policy.keep()
    if after == before or kept is not None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = (placement, after, kept)
    return placement


_Found = tuple[Placement | None, Hashable, object | None]
_MEMO: WeakKeyDictionary[ClusterState, dict[Hashable, _Found]] = WeakKeyDictionary()
"""Gang placements per state, by the state's content hash, the gang and the policy's
fingerprint, with the fingerprint the search left and what restores it: a job refused
for its price or its quota is placed again, cycle after cycle, on a cluster that often
has not changed."""
_MEMO_SIZE = 4096


def _place_gang(state: ClusterState, job: Job, policy: PlacementPolicy) -> Placement | None:
    placement = _place_same_node(state, job, policy)
    if placement is not None or job.topology == Topology.SAME_NODE:
        return placement
    placement = _place_same_rack(state, job, policy)
    if placement is not None or job.topology == Topology.SAME_RACK:
        return placement
    return _place_spread(state, job, policy, None)


def _slots(state: ClusterState, job: Job) -> NDArray[np.int64] | None:
    """How many of ``job``'s whole-GPU replicas each node of its GPU types could hold
    (0 on the others), or None when that is not bounded here (shares of a GPU, or a
    replica asking for nothing)."""
    shape = job.shape
    if shape.gpus and shape.gpu_milli != GPU_MILLI:
        return None
    c = state.cols
    slots: NDArray[np.int64] | None = None
    for free, need in (
        (c.full_free, shape.gpus),
        (c.cpu_free, shape.cpu_milli),
        (c.mem_free, shape.mem_mib),
    ):
        if need > 0:
            per_node = free // need
            slots = per_node if slots is None else np.minimum(slots, per_node)
    if slots is None:
        return None
    return np.where(state.type_mask(job.gpu_types), slots, 0)


def fits_unsearched(
    state: ClusterState,
    job: Job,
    policy: PlacementPolicy,
    released: Iterable[Placement] = (),
) -> bool | None:
    """Whether ``place_job`` would place ``job``, when free capacity alone says so and
    the policy always picks a candidate; None when only a search can tell. With
    ``released``, as if those placements were released first (the state is not touched).

    Placing one whole-GPU replica takes exactly one of its node's slots (``_slots``),
    so as long as candidates remain a policy that always picks one places the next
    replica: a gang without a topology constraint fits iff the slots add up to its
    replicas (the spread is the last resort), one on a single node iff some node has
    that many. A rack constraint, shares of a GPU and other policies need the search.
    """
    if not job.shape.gpus or job.topology == Topology.SAME_RACK or not policy.always_picks():
        return None
    slots = _slots(state, job)
    if slots is None:
        return None
    shadow: dict[int, tuple[list[int], list[int]]] = {}
    for placement in released:
        for rp in placement:
            i = state.index_of[rp.node]
            got = shadow.get(i)
            if got is None:
                got = shadow[i] = (list(state.gpu_free[i]), [state.cpu_free[i], state.mem_free[i]])
            for g in rp.gpu_indices:
                got[0][g] += rp.gpu_milli
            got[1][0] += rp.cpu_milli
            got[1][1] += rp.mem_mib
    if shadow:
        slots = slots.copy()
        mask = state.type_mask(job.gpu_types)
        shape = job.shape
        for i, (gpu_free, (cpu, mem)) in shadow.items():
            if mask[i]:
                n = gpu_free.count(GPU_MILLI) // shape.gpus
                if shape.cpu_milli:
                    n = min(n, cpu // shape.cpu_milli)
                if shape.mem_mib:
                    n = min(n, mem // shape.mem_mib)
                slots[i] = n
    if job.topology == Topology.SAME_NODE and job.replicas > 1:
        return bool(slots.max(initial=0) >= job.replicas)
    return int(slots.sum()) >= job.replicas


def fits_quietly(
    state: ClusterState,
    job: Job,
    policy: PlacementPolicy,
    avoid: frozenset[int] | Sequence[int] = (),
    *,
    settle: bool = True,
) -> bool | None:
    """Whether ``place_job`` would place ``job`` with ``policy`` kept off the nodes of
    ``avoid`` (as ``cycle.reservations.Avoiding`` does), when free capacity alone says
    so and the search would leave the policy as it is; None when only a search can
    tell, or when it might change the policy (``quiet_for``) beyond what its first
    ``select`` would (done here, ``PlacementPolicy.settle``, unless ``settle`` is
    False: then None whenever the search might change the policy at all).

    As for ``fits_unsearched``: a policy that always picks places whole-GPU replicas
    one slot each, so a gang without a topology constraint fits iff the slots off
    ``avoid`` add up to its replicas. Every ``select`` of the search, failing or not,
    sees at most ``replicas - 1`` of them placed (the slots off ``avoid``, if fewer).
    """
    if not job.shape.gpus or job.topology != Topology.NONE or not policy.always_picks():
        return None
    slots = _slots(state, job)
    if slots is None:
        return None
    if len(avoid):
        slots = slots.copy()
        slots[np.fromiter(avoid, dtype=np.int64, count=len(avoid))] = 0
    placeable = int(slots.sum())
    if not placeable:
        return False  # no candidate for any replica: ``select`` is never called
    fits = placeable >= job.replicas
    taken = min(placeable, job.replicas - 1) * job.shape.total_gpu_milli
    if not policy.quiet_for(state, taken):
        if not settle:
            return None
        # The search's first ``select`` is on ``state`` as it is: what that call
        # changes is made now, and only the rest of the search must leave it be.
        policy.settle(state)
        if not policy.quiet_for(state, taken):
            return None
    return fits


def _may_fit(state: ClusterState, job: Job, policy: PlacementPolicy) -> bool:
    """False only when ``job``'s gang cannot be placed and not trying changes nothing.

    A node can hold at most ``min(free whole GPUs // GPUs, free CPU // CPU, free memory
    // memory)`` of the gang's replicas (each term where the replica asks for some); if
    those slots, summed over the schedulable nodes of the job's GPU types, are fewer
    than the replicas, every layout fails (a node that fits the whole gang, a rack or a
    spread are all bounded by the same slots). A placement that fails still calls the
    policy's ``select`` for the replicas it places before failing (at most the slots),
    so the search is skipped only when the policy says such calls leave it unchanged.
    """
    slots = _slots(state, job)
    if slots is None:
        return True
    placeable = int(slots.sum())
    if placeable >= job.replicas:
        return True
    taken = min(placeable, job.replicas - 1) * job.shape.total_gpu_milli
    return not policy.quiet_for(state, taken)


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
    among = None if rack is None else state.rack_nodes(rack)
    cp = state.checkpoint()
    placed: list[ReplicaPlacement] = []
    order: Sequence[int] | None = None
    try:
        for k in range(job.replicas):
            if order is None:
                candidates = state.candidate_array(job.shape, job.gpu_types, among)
                if not len(candidates):
                    return None
                if k == 0 and job.replicas > 1:
                    order = policy.alike(state, job.shape, candidates)
            if order is not None:
                # The candidates are ``order``'s untaken nodes, all alike: no scoring.
                if k >= len(order):
                    return None
                i = order[k]
                gpus = policy.select_known(state, job.shape, i)
            else:
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
