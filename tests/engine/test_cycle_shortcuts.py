"""The cycle's shortcuts decide as the walks they replace: admission and lending
settle a queue's rest on counts (``_settle_by_counts``) only where the walk would
find the same outcomes, so a cycle with them turned off decides the same."""

from __future__ import annotations

import random

import pytest

from mosu.core.models import GPU_MILLI, Job, Quota, RunningJob, Shape, Tenant
from mosu.engine.cycle import admission, lending, schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState

from .helpers import node

NOW = 100_000.0
SIZES = [(1, 1)] * 6 + [(2, 1), (4, 1), (8, 1), (8, 2)]


def busy_cluster(seed: int, *, nodes_n: int = 24, tenants_n: int = 5) -> ClusterSnapshot:
    """A cluster filled to ~90 % by a skewed set of tenants, with a queue of
    mixed sizes several times its capacity behind it."""
    rng = random.Random(seed)
    nodes = tuple(node(f"n{i:02d}", rack=f"r{i // 8}") for i in range(nodes_n))
    per_tenant = nodes_n * 8 // tenants_n
    limit = rng.choice([None, 2 * per_tenant * GPU_MILLI])
    tenants = tuple(
        Tenant(f"t{k}", (("A100", Quota(per_tenant * GPU_MILLI, limit)),), weight=1.0)
        for k in range(tenants_n)
    )
    state = ClusterState(nodes)
    running: list[RunningJob] = []
    used, i = 0, 0
    while used < 0.9 * nodes_n * 8 * GPU_MILLI and i < 10 * nodes_n:
        gpus, replicas = rng.choice(SIZES)
        tenant = f"t{min(rng.randrange(tenants_n), rng.randrange(tenants_n))}"
        job = Job(
            f"r{i}",
            tenant,
            Shape(gpus),
            replicas=replicas,
            submit_s=NOW - 5_000 + i,
            estimate_s=rng.choice([600.0, 3_600.0]),
            checkpoint_every_s=rng.choice([None, 1_800.0]),
        )
        i += 1
        placement = place_job(state, job, BestFit())
        if placement is None:
            continue
        state.assign(job.id, placement)
        used += job.total_gpu_milli
        running.append(RunningJob(job, placement, started_s=NOW - rng.uniform(0, 4_000)))
    pending = tuple(
        Job(
            f"p{k}",
            f"t{rng.randrange(tenants_n)}",
            Shape(gpus),
            replicas=replicas,
            submit_s=NOW - 1_000 + k,
            estimate_s=rng.choice([None, 600.0, 3_600.0]),
        )
        for k in range(nodes_n * 12)
        for gpus, replicas in [rng.choice(SIZES)]
    )
    return ClusterSnapshot(
        now=NOW, nodes=nodes, tenants=tenants, running=tuple(running), pending=pending
    )


def decisions(result: CycleResult) -> tuple[object, ...]:
    return (result.starts, result.preemptions, result.pending, result.wake_at_s)


@pytest.mark.parametrize("profile", ["mosu", "kueue", "las", "fifo-backfill", "drf"])
@pytest.mark.parametrize("seed", range(6))
def test_settling_on_counts_decides_as_the_walk(
    profile: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = busy_cluster(seed)
    shortcut = schedule(snap, build_profile(profile))
    monkeypatch.setattr(admission, "_settle_by_counts", lambda *args: False)
    monkeypatch.setattr(lending, "_settle_by_counts", lambda *args: False)
    walked = schedule(snap, build_profile(profile))
    assert decisions(shortcut) == decisions(walked)


def test_the_shortcuts_are_taken() -> None:
    """The clusters above do reach a full cluster with a long queue: the shortcut
    settles some queue there (else the comparison would prove nothing)."""
    taken = []
    real = lending._settle_by_counts

    def spy(*args: object) -> bool:
        settled = real(*args)  # type: ignore[arg-type]
        taken.append(settled)
        return settled

    lending._settle_by_counts = spy  # type: ignore[assignment]
    try:
        for seed in range(6):
            schedule(busy_cluster(seed), build_profile("kueue"))
    finally:
        lending._settle_by_counts = real  # type: ignore[assignment]
    assert any(taken)
