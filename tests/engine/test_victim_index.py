"""Reclaim's indexed victim search makes the plans ``find_victims_by_node`` defines.

Seeded busy clusters (one or two GPU types, cohorts or none, gangs, jobs too young to
preempt, a few empty nodes) go through a cycle twice: with ``VictimIndex`` and with
the definition run over the full candidate list. Every decision must be the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from mosu.core.models import GPU_MILLI, Job, Placement, Quota, RunningJob, Tenant
from mosu.core.reasons import PreemptReason
from mosu.engine.cycle import schedule
from mosu.engine.cycle.ranks import order_queues
from mosu.engine.cycle.starting import evict
from mosu.engine.cycle.victim_index import VictimIndex
from mosu.engine.cycle.victims import running_victims, tenant_victims, victims_among
from mosu.engine.cycle.work import open_cycle
from mosu.engine.decisions import CycleResult
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.preemption import Victim, find_victims_by_node
from mosu.engine.profiles import build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node

NOW = 100_000.0
SEEDS = range(40)


def busy_cluster(seed: int) -> ClusterSnapshot:
    rng = random.Random(seed)
    types = ["A100"] if seed % 3 else ["A100", "H100"]
    nodes = [
        node(f"n{i:02d}", rng.choice([4, 8, 8]), gpu_type=rng.choice(types), rack=f"r{i // 4}")
        for i in range(rng.randint(6, 24))
    ]
    capacity = {t: sum(n.gpus for n in nodes if n.gpu_type == t) for t in types}
    names = [f"t{k}" for k in range(rng.randint(3, 6))]
    cohorts = seed % 4 == 0
    tenants = []
    for name in names:
        quotas = tuple(
            (t, Quota(capacity[t] * GPU_MILLI // len(names), None)) for t in types if capacity[t]
        )
        cohort = rng.choice(["x", "y"]) if cohorts else None
        tenants.append(Tenant(name, quotas, weight=1.0, cohort=cohort))
    state = ClusterState(nodes)
    running = []
    total = sum(capacity.values())
    used = 0
    for i in range(400):
        if used >= 0.95 * total:
            break
        gpus, replicas = rng.choice([(1, 1), (1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (4, 2)])
        # A few tenants borrow heavily, as in a busy cluster.
        tenant = names[min(rng.randrange(len(names)), rng.randrange(len(names)))]
        j = job(f"r{i}", gpus, replicas=replicas, tenant=tenant, t=float(i))
        j = replace(j, checkpoint_every_s=rng.choice([None, 900.0]))
        placement = place_job(state, j, BestFit())
        if placement is None:
            continue
        state.assign(j.id, placement)
        used += gpus * replicas
        started = NOW - rng.choice([30.0, 600.0, 5_000.0, 40_000.0])
        running.append(RunningJob(j, placement, started_s=started, attained_gpu_s=0.0))
    shapes = [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2)]
    gangs = [(4, 2), (4, 3), (8, 2), (8, 3)]
    if seed % 5 == 1:
        # A few nodes left empty: a gang's replicas may go there at no cost.
        spare = {n.name for n in nodes[-3:]}
        running = [r for r in running if not any(rp.node in spare for rp in r.placement)]
    pending = [
        job(
            f"p{k}",
            gpus,
            replicas=replicas,
            tenant=rng.choice(names),
            t=1_000.0 + k,
            gpu_types=rng.choice([(), (), (types[-1],)]),
            estimate=rng.choice([None, 600.0, 7_200.0]),
        )
        for k in range(rng.randint(5, 40))
        for gpus, replicas in [rng.choice(gangs if seed % 5 == 1 else shapes)]
    ]
    return ClusterSnapshot(
        now=NOW,
        nodes=tuple(nodes),
        tenants=tuple(tenants),
        running=tuple(running),
        pending=tuple(pending),
    )


def by_definition(
    self: VictimIndex,
    job: Job,
    *,
    borrowing: frozenset[str],
    borrowed_on: Callable[[Victim], int],
    home: str | None,
    fits: Callable[[], Placement | None],
    may_take: Callable[[Victim, Sequence[Victim]], bool],
    need_milli: int,
    free_milli: int,
    candidates: Callable[[], list[Victim]],
) -> tuple[list[Victim], Placement] | None:
    return find_victims_by_node(
        self.work.state,
        job,
        candidates(),
        fits,
        may_take=may_take,
        need_milli=need_milli,
        free_milli=free_milli,
    )


def decisions(result: CycleResult) -> list[tuple[object, ...]]:
    return [
        *((p.job_id, p.reason, p.for_job) for p in result.preemptions),
        *((s.job_id, s.placement) for s in result.starts),
        *((p.job_id, p.reason, p.estimated_start_s, p.late_start_s) for p in result.pending),
    ]


@pytest.mark.parametrize("name", ["mosu", "kueue"])
def test_indexed_reclaim_decides_as_the_definition(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reclaimed = 0
    for seed in SEEDS:
        snap = busy_cluster(seed)
        indexed = schedule(snap, build_profile(name))
        with monkeypatch.context() as patch:
            patch.setattr(VictimIndex, "find", by_definition)
            defined = schedule(snap, build_profile(name))
        assert decisions(indexed) == decisions(defined), f"seed {seed}"
        reclaimed += sum(p.reason == PreemptReason.RECLAIM for p in indexed.preemptions)
    # The seeds must exercise reclaim for the comparison to mean anything.
    assert reclaimed >= 50


@pytest.mark.parametrize("name", ["mosu", "kueue"])
def test_victims_of_some_tenants_are_all_victims_filtered(name: str) -> None:
    """Reclaim builds victims tenant by tenant on first need, some after evictions:
    each list must be what the whole list, built once, gives for those tenants."""
    for seed in SEEDS:
        snap = busy_cluster(seed)
        rng = random.Random(seed)
        lazy, whole = open_cycle(snap, build_profile(name)), open_cycle(snap, build_profile(name))
        order_queues(lazy)
        order_queues(whole)
        tenants = sorted({r.job.tenant for r in snap.running})
        for _ in range(12):
            some = rng.sample(tenants, rng.randint(1, len(tenants)))
            want = [v.job_id for v in running_victims(whole) if v.tenant in some]
            assert [v.job_id for v in victims_among(lazy, some)] == want, f"seed {seed}"
            one = rng.choice(tenants)
            want_one = [v.job_id for v in running_victims(whole) if v.tenant == one]
            assert [v.job_id for v in tenant_victims(lazy, one)] == want_one, f"seed {seed}"
            # An eviction between looks, as reclaim makes them.
            old = [v for v in running_victims(whole) if rng.random() < 0.1]
            for v in old[:2]:
                evict(whole, v, PreemptReason.RECLAIM, "p")
                evict(lazy, v, PreemptReason.RECLAIM, "p")
