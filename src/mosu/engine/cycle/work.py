"""The working state of one cycle: ``Work``, opening it (phase 1), and the quota
arithmetic every phase reads (guarantees, limits, borrowed amounts, cohort checks,
dominant share)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from mosu.core.models import GPU_MILLI, Job, RunningJob, Tenant, Topology
from mosu.engine.cohorts import CohortBook
from mosu.engine.decisions import Preempt, Start
from mosu.engine.ordering import Rank
from mosu.engine.preemption import Victim
from mosu.engine.profiles import QueueMode, QuotaMode, SchedulingProfile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState

if TYPE_CHECKING:
    from mosu.engine.cycle.victim_index import VictimIndex

INF = math.inf


class Outcome(Enum):
    STARTED = 0
    QUOTA = 1
    NO_FIT = 2
    BLOCKED = 3
    NEVER = 4


@dataclass(frozen=True, slots=True)
class Reservation:
    job_id: str
    start_s: float
    nodes: frozenset[int]
    need_milli: int = 0
    """The GPUs the blocked job asks for (at most this much of the nodes is held)."""


NoFitKey = tuple[tuple[str, ...], Topology, frozenset[int]]
"""(GPU types tried, topology, nodes avoided) of a placement attempt."""
Dims = tuple[int, int, int, int, int]
"""``Job.dims``: what a placement attempt's failure depends on, per dimension."""


@dataclass(frozen=True)
class QueueSizes:
    """The sizes along one tenant's queue, whose jobs all allow ``gpu_types``."""

    gpu_types: tuple[str, ...]
    need: np.ndarray
    """Each job's GPU milli (``total_gpu_milli``)."""
    gpus: np.ndarray
    """Each job's GPUs per replica."""
    tail_need: list[int]
    """For each position, the smallest need from there to the end."""


def queue_sizes(work: Work, tenant: str) -> QueueSizes | None:
    """``CycleMemo.queue_sizes`` of ``tenant``, built on first need."""
    sizes = work.memo.queue_sizes
    if tenant in sizes:
        return sizes[tenant]
    queue = work.queues[tenant]
    kinds = {j.gpu_types for j in queue}
    found: QueueSizes | None = None
    if len(kinds) == 1:
        # ``total_gpu_milli``, inline: gpus * share * replicas is 0 without GPUs too.
        need = np.array([j.dims[0] * j.dims[1] * j.dims[2] for j in queue], dtype=np.int64)
        gpus = np.array([j.dims[0] for j in queue], dtype=np.int64)
        tail = np.minimum.accumulate(need[::-1])[::-1]
        found = QueueSizes(kinds.pop(), need, gpus, tail.tolist())
    sizes[tenant] = found
    return found


@dataclass(frozen=True)
class CountedRest:
    """The rest of a tenant's queue where counts alone decide each job (``count_rest``)."""

    gpu_type: str
    codes: list[int]
    """Per job from the start: 1 over the quota's room, else 2 larger than any node of
    the type, else 0 (does not fit what is free)."""
    needs: list[int]
    """Per job from the start: its GPU milli."""
    tail_need: list[int]
    """``QueueSizes.tail_need`` of the whole queue."""


def count_rest(
    work: Work, tenant: str, start: int, cap: Callable[[Work, str, str], float]
) -> CountedRest | None:
    """Whether counts decide the rest of ``tenant``'s queue from ``start``, and how: all
    its jobs allow one GPU type, each needs more than is free of it, and no outcome can
    call for a reservation (the profile holds none, or has all it may). ``cap`` is the
    quota the room is measured against (``guarantee`` or ``limit``). None when counts
    do not decide it: the walk must place job by job."""
    profile = work.profile
    if (
        profile.queue_mode == QueueMode.BACKFILL
        and len(work.reservations) < profile.max_reservations
    ):
        return None
    sizes = queue_sizes(work, tenant)
    if sizes is None:
        return None
    types = sizes.gpu_types or work.state.gpu_types
    if len(types) != 1 or start >= len(work.queues[tenant]):
        return None
    only = types[0]
    if sizes.tail_need[start] <= work.free.get(only, 0):
        return None  # some job may fit (or needs no GPU)
    need = sizes.need[start:]
    quota = need > cap(work, tenant, only) - work.usage.get((tenant, only), 0)
    never = ~quota & (sizes.gpus[start:] > work.max_node_gpus.get(only, 0))
    codes = np.where(quota, 1, np.where(never, 2, 0)).tolist()
    return CountedRest(only, codes, need.tolist(), sizes.tail_need)


@dataclass
class CycleMemo:
    """Everything a cycle remembers only to avoid recomputing it.

    Two kinds: figures fixed for the whole cycle (quota caps, running jobs' classes
    and victims), never dropped, and findings about the working state (what did not
    fit, what was over quota, where reservations failed), dropped by ``invalidate``
    when the state changes under them.
    """

    guarantees: dict[tuple[str, str], float] = field(default_factory=dict)
    limits: dict[tuple[str, str], float] = field(default_factory=dict)
    run_classes: dict[str, Rank] | None = None
    """The preemption class of every job running when first asked (fixed for the cycle:
    a running job's service and true remaining time are functions of ``now``)."""
    victim_of: dict[str, Victim | None] = field(default_factory=dict)
    """Running job id -> its ``Victim`` (None while younger than the minimum runtime),
    built on first need: most cycles look at few of them, and the cost is fixed."""
    worst_first_of: dict[Rank, Rank] = field(default_factory=dict)
    """A running class -> its sort key, worst class first."""
    running_of_tenant: dict[str, list[str]] | None = None
    """Tenant -> ids of its jobs running when first asked (filter by ``running``)."""
    all_victims: list[Victim] | None = None
    """Every preemptible running job, cheapest first, as the cycle opened."""
    victims_of_tenant: dict[str, list[Victim]] = field(default_factory=dict)
    """Tenant -> its preemptible running jobs, cheapest first, built on first need."""
    queue_sizes: dict[str, QueueSizes | None] = field(default_factory=dict)
    """Tenant -> the sizes along its queue (None when its jobs allow different GPU
    types); built on first need."""
    no_fit: dict[NoFitKey, list[Dims]] = field(default_factory=dict)
    """Placement attempts that failed: a job needing at least as much in every
    dimension fails too, until capacity is freed."""
    over_quota: dict[tuple[str, tuple[str, ...], bool], int] = field(default_factory=dict)
    """(tenant, allowed GPU types, within guarantee) -> the smallest need found over
    quota since the tenant's usage last shrank. Usage only grows between evictions and
    caps are fixed for the cycle, so any job of that tenant and types needing as much
    is over quota too; queues long with such jobs are skipped at a dict lookup each."""
    running_ends: list[tuple[float, str]] | None = None
    """Estimated end of every running job, sorted; built on the first reservation."""
    victim_index: VictimIndex | None = None
    """Reclaim's running victims by node (``victim_index``), built on its first search;
    it follows the working state by itself."""
    reserve_failed: set[tuple[Dims, tuple[str, ...], Topology]] = field(default_factory=set)
    avoid: dict[float | tuple[float, str], frozenset[int]] = field(default_factory=dict)
    """Nodes to avoid (``avoid_for``) by a job's estimated end (and id, for a job holding
    a reservation), for the reservations of ``avoid_for`` as it had ``avoid_len``."""
    avoid_for: list[Reservation] | None = None
    avoid_len: int = 0
    avoid_holders: set[str] = field(default_factory=set)
    """Shapes that found no reservation since the state last changed: they would find
    none again, as the search reads nothing else of the job."""

    def invalidate(self, *, freed: bool) -> None:
        """The working state changed: forget what it may have made wrong. A start or a
        new reservation (``freed`` False) only takes capacity, so what did not fit and
        what was over quota still hold; an eviction frees capacity and usage, so
        nothing found about the state does."""
        self.reserve_failed.clear()
        self.avoid_for = None
        if freed:
            self.no_fit.clear()
            self.over_quota.clear()
            self.running_ends = None


@dataclass
class Work:
    """The cycle's working copy and bookkeeping."""

    snap: ClusterSnapshot
    profile: SchedulingProfile
    state: ClusterState
    tenants: dict[str, Tenant]
    running: dict[str, RunningJob]
    usage: dict[tuple[str, str], int]
    free: dict[str, int]
    max_node_gpus: dict[str, int]
    capacity: dict[str, int]
    ranks: dict[str, Rank] = field(default_factory=dict)
    queues: dict[str, list[Job]] = field(default_factory=dict)
    ranked: list[Job] = field(default_factory=list)
    """Every pending job, best rank first."""
    started_jobs: dict[str, Job] = field(default_factory=dict)
    starts: list[Start] = field(default_factory=list)
    preempts: list[Preempt] = field(default_factory=list)
    outcome: dict[str, Outcome] = field(default_factory=dict)
    waiting_guarantee: list[Job] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    blocked_tenants: set[str] = field(default_factory=set)
    preempted_tenant: dict[str, str] = field(default_factory=dict)
    cohorts: CohortBook | None = None
    """Cohort usage, when tenants belong to two or more cohorts and may borrow."""
    memo: CycleMemo = field(default_factory=CycleMemo)
    wake_s: float | None = None
    """The earliest time a decision put off would be cheaper (``pricing.wake_at``)."""

    @property
    def now(self) -> float:
        return self.snap.now


def _job_id(run: RunningJob) -> str:
    return run.job.id


def open_cycle(snap: ClusterSnapshot, profile: SchedulingProfile) -> Work:
    # The placement learns the live task mix before it places anything this cycle.
    profile.placement.learn(snap.pending, snap.running)
    state = snap.base_state
    if state is None:
        state = ClusterState(snap.nodes)
        state.load((run.job.id, run.placement) for run in sorted(snap.running, key=_job_id))
    free: dict[str, int] = {t: 0 for t in state.gpu_types}
    capacity: dict[str, int] = {t: 0 for t in state.gpu_types}
    max_node_gpus: dict[str, int] = {t: 0 for t in state.gpu_types}
    if len(state.gpu_types) == 1:  # the common case, without a pass over every node
        only = state.gpu_types[0]
        capacity[only] = state.capacity_milli
        free[only] = state.free_milli
        max_node_gpus[only] = state.most_gpus
    else:
        for i, node in enumerate(state.nodes):
            if state.schedulable[i]:
                capacity[node.gpu_type] += node.gpus * GPU_MILLI
                max_node_gpus[node.gpu_type] = max(max_node_gpus[node.gpu_type], node.gpus)
        for i, node in enumerate(state.nodes):
            if state.schedulable[i]:
                free[node.gpu_type] += sum(state.gpu_free[i])
    if snap.running_by_id is not None:
        running = dict(snap.running_by_id)
    else:
        running = {run.job.id: run for run in snap.running}
    if snap.usage_milli is not None:
        usage = dict(snap.usage_milli)
    else:
        usage = {}
        type_of = {n.name: n.gpu_type for n in state.nodes}
        for run in snap.running:
            tenant = run.job.tenant
            for rp in run.placement:
                key = (tenant, type_of[rp.node])
                usage[key] = usage.get(key, 0) + rp.gpu_milli * len(rp.gpu_indices)
    work = Work(
        snap=snap,
        profile=profile,
        state=state,
        tenants={t.name: t for t in snap.tenants},
        running=running,
        usage=usage,
        free=free,
        max_node_gpus=max_node_gpus,
        capacity=capacity,
    )
    if profile.quotas == QuotaMode.BORROW and CohortBook.needed(snap.tenants):
        work.cohorts = CohortBook(
            snap.tenants, capacity, usage, lambda t, g: int(guarantee(work, t, g))
        )
    return work


# -- quota arithmetic ----------------------------------------------------------


def guarantee(work: Work, tenant: str, gpu_type: str) -> float:
    key = (tenant, gpu_type)
    cached = work.memo.guarantees.get(key)
    if cached is not None:
        return cached
    t = work.tenants.get(tenant)
    if work.profile.quotas == QuotaMode.SHARED or t is None:
        value = 0
    else:
        value = t.quota(gpu_type).guaranteed_milli
    work.memo.guarantees[key] = value
    return value


def limit(work: Work, tenant: str, gpu_type: str) -> float:
    key = (tenant, gpu_type)
    cached = work.memo.limits.get(key)
    if cached is None:  # fixed for the cycle; asked for every job tried
        cached = work.memo.limits[key] = _quota_limit(work, tenant, gpu_type)
    return cached


def _quota_limit(work: Work, tenant: str, gpu_type: str) -> float:
    mode = work.profile.quotas
    if mode == QuotaMode.SHARED:
        return INF
    t = work.tenants.get(tenant)
    if t is None:
        return 0 if mode == QuotaMode.STATIC else INF
    quota = t.quota(gpu_type)
    if mode == QuotaMode.STATIC:
        return quota.guaranteed_milli
    return INF if quota.limit_milli is None else quota.limit_milli


def types_of(work: Work, job: Job) -> tuple[str, ...]:
    return job.gpu_types or work.state.gpu_types


def borrowed_milli(work: Work, tenant: str, gpu_type: str) -> int:
    return work.usage.get((tenant, gpu_type), 0) - int(guarantee(work, tenant, gpu_type))


def may_borrow(work: Work, tenant: str, gpu_type: str, milli: int) -> bool:
    """Whether the tenant's cohort leaves ``milli`` more of ``gpu_type`` to borrow."""
    return work.cohorts is None or work.cohorts.may_borrow(tenant, gpu_type, milli)


def may_borrow_after(
    work: Work, tenant: str, taken: dict[str, int], victims: Sequence[Victim]
) -> bool:
    """``may_borrow`` for every type in ``taken`` once ``victims`` are gone."""
    book = work.cohorts
    if book is None:
        return True
    freed = [
        (v.tenant, node_type(work, rp.node), rp.gpu_milli * len(rp.gpu_indices))
        for v in victims
        for rp in v.placement
    ]
    for who, gpu_type, milli in freed:
        book.add(who, gpu_type, -milli)
    try:
        return all(book.may_borrow(tenant, t, amount) for t, amount in taken.items())
    finally:
        for who, gpu_type, milli in freed:
            book.add(who, gpu_type, milli)


def node_type(work: Work, node: str) -> str:
    return work.state.nodes[work.state.index_of[node]].gpu_type


def dominant_share(work: Work, tenant: str) -> float:
    t = work.tenants.get(tenant)
    weight = t.weight if t is not None and t.weight > 0 else 1.0
    share = 0.0
    for gpu_type, cap in work.capacity.items():
        if cap:
            share = max(share, work.usage.get((tenant, gpu_type), 0) / cap)
    return share / weight
