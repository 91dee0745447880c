"""Replay: preemption cost, requeue, reclaim wait, and byte-identical determinism."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mosu.core.models import GPU_MILLI, Quota, Shape, Tenant
from mosu.engine.profiles import build_profile
from mosu.sim.metrics import attainment_within_guarantee, summarize
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces.schema import TraceJob
from tests.engine.helpers import node


def tenant(name: str, guaranteed: int) -> Tenant:
    return Tenant(name=name, quotas=(("A100", Quota(guaranteed_milli=guaranteed * GPU_MILLI)),))


def tjob(job_id: str, tenant: str, submit: float, duration: float, gpus: int) -> TraceJob:
    return TraceJob(
        id=job_id, tenant=tenant, submit_s=submit, duration_s=duration, shape=Shape(gpus=gpus)
    )


NOW_RECLAIM = replace(build_profile("mosu"), reclaim_at_checkpoint=False)
"""mosu reclaiming at once, never waiting for the victim's checkpoint."""

RECLAIM_TRACE = [
    tjob("a1", "a", 0.0, 10_000.0, 8),  # borrows b's half of the node
    tjob("b1", "b", 3_000.0, 1_000.0, 4),  # b wants its guarantee back
]


@pytest.mark.parametrize(
    ("name", "checkpoint_every", "overhead", "want_a1_finish", "want_lost"),
    [
        (
            "a reclaimed job keeps its last checkpoint and pays the restart",
            1_800,
            60,
            12_260,
            9_600,
        ),
        ("free preemption keeps all work and costs nothing", 0, 0, 11_000, 0),
    ],
)
def test_reclaim_costs_the_work_since_the_last_checkpoint(
    name: str, checkpoint_every: float, overhead: float, want_a1_finish: float, want_lost: float
) -> None:
    result = replay(
        RECLAIM_TRACE,
        [tenant("a", 4), tenant("b", 4)],
        [node("n0", 8)],
        NOW_RECLAIM,
        ReplayConfig(checkpoint_every, overhead),
    )
    out = {o.job_id: o for o in result.log.outcomes}
    assert out["a1"].first_start_s == 0.0
    assert out["a1"].preemptions == 1
    assert out["a1"].finish_s == pytest.approx(want_a1_finish)
    assert out["a1"].lost_gpu_s == pytest.approx(want_lost)
    assert out["b1"].first_start_s == 3_000.0
    assert out["b1"].finish_s == 4_000.0
    assert out["b1"].reclaim_wait_s == 0.0


@pytest.mark.parametrize(
    ("declared", "want_a1_finish", "want_lost"),
    [
        # Preempted at 3,000 s: a checkpoint every 1,000 s has just saved everything.
        (1_000.0, 11_060.0, 0.0),
        # Every 700 s: the last one at 2,800 s, 200 s x 8 GPUs lost.
        (700.0, 11_260.0, 1_600.0),
        # None declared: the config's 1,800 s applies.
        (None, 12_260.0, 9_600.0),
    ],
)
def test_a_job_declaring_its_checkpoint_interval_loses_only_work_since_its_own(
    declared: float | None, want_a1_finish: float, want_lost: float
) -> None:
    trace = [replace(RECLAIM_TRACE[0], checkpoint_every_s=declared), RECLAIM_TRACE[1]]
    result = replay(
        trace,
        [tenant("a", 4), tenant("b", 4)],
        [node("n0", 8)],
        NOW_RECLAIM,
        ReplayConfig(1_800, 60),
    )
    out = {o.job_id: o for o in result.log.outcomes}
    assert out["a1"].preemptions == 1
    assert out["a1"].finish_s == pytest.approx(want_a1_finish)
    assert out["a1"].lost_gpu_s == pytest.approx(want_lost)


def test_reclaim_waits_for_the_victims_checkpoint_when_that_is_cheaper() -> None:
    # At 3,000 s a1 is 1,200 s past its checkpoint: 8 x 1,260 GPU-s to preempt now,
    # against b1's 4 GPUs idle for the 600 s to a1's next one (+ 8 x 60 to restart).
    # The cycle asks to be woken a second after it; a1 then loses 8 GPU-s.
    result = replay(
        RECLAIM_TRACE,
        [tenant("a", 4), tenant("b", 4)],
        [node("n0", 8)],
        replace(build_profile("mosu"), reclaim_at_checkpoint=True, checkpoint_wait_min_gpus=8),
        ReplayConfig(1_800, 60),
    )
    assert [line for line in result.decisions if " preempt " in line] == [
        "3601.000 preempt a1 reclaim b1"
    ]
    out = {o.job_id: o for o in result.log.outcomes}
    assert out["a1"].lost_gpu_s == pytest.approx(8.0)
    assert out["a1"].finish_s == pytest.approx(4_601.0 + 60.0 + 10_000.0 - 3_600.0)
    assert out["b1"].first_start_s == 3_601.0
    # b1's guarantee went unmet for 601 s of the 1,601 s it wanted 4 GPUs.
    assert summarize(result.log)["tenants"]["b"]["quota_attainment"] == pytest.approx(1_000 / 1_601)


def test_reserved_idle_and_fitting_demand_are_recorded() -> None:
    # a1 (6 GPUs) holds the node; a2 (8) is reserved from a1's estimated end: the
    # node's two free GPUs are held idle for it.
    trace = [
        replace(tjob("a1", "a", 0.0, 1_000.0, 6), estimate_s=1_000.0),
        replace(tjob("a2", "a", 10.0, 1_000.0, 8), estimate_s=1_000.0),
    ]
    result = replay(trace, [tenant("a", 16)], [node("n0", 8)], build_profile("fifo-backfill"))
    # Two GPUs idle and held for a2 from 10 s until a1 ends at 1,000 s.
    assert result.log.reserved_idle == ((10.0, 2000), (1_000.0, 0))
    # a1 and a2 both fit a's guarantee: the fitting demand is the whole demand.
    assert {(s.time_s, s.demand_milli) for s in result.log.usage_within} == {
        (s.time_s, s.demand_milli) for s in result.log.usage
    }


def test_static_partitions_queue_instead_of_borrowing() -> None:
    result = replay(
        RECLAIM_TRACE, [tenant("a", 4), tenant("b", 4)], [node("n0", 8)], build_profile("fifo")
    )
    out = {o.job_id: o for o in result.log.outcomes}
    assert out["a1"].first_start_s is None  # 8 GPUs never fit a 4-GPU partition
    assert out["b1"].first_start_s == 3_000.0
    assert out["b1"].preemptions == 0


def _workload(seed: int, n: int = 250) -> list[TraceJob]:
    rng = random.Random(seed)
    jobs = []
    t = 0.0
    for i in range(n):
        t += rng.expovariate(1 / 60)
        gpus = rng.choice([1, 1, 1, 2, 4, 8])
        jobs.append(
            tjob(f"j{i}", rng.choice("abc"), round(t), round(rng.expovariate(1 / 900)) + 1, gpus)
        )
    return jobs


@pytest.mark.parametrize("policy", ["mosu", "las", "fifo-backfill", "kueue", "srtf-oracle"])
def test_replaying_twice_gives_identical_decisions(policy: str) -> None:
    jobs = _workload(3)
    tenants = [tenant("a", 8), tenant("b", 8), tenant("c", 16)]
    nodes = [node(f"n{i}", 8) for i in range(4)]
    first = replay(jobs, tenants, nodes, build_profile(policy))
    second = replay(jobs, tenants, nodes, build_profile(policy))
    assert "\n".join(first.decisions) == "\n".join(second.decisions)
    assert first.log == second.log
    finished = [o for o in first.log.outcomes if o.finish_s is not None]
    assert len(finished) == len(jobs)
    for o in finished:
        assert o.finish_s - o.first_start_s >= o.duration_s - 1e-6


def test_a_job_that_waits_gets_the_estimate_made_at_its_arrival() -> None:
    jobs = [
        tjob("a1", "a", 0.0, 1_000.0, 8),  # fills a's partition
        tjob("a2", "a", 10.0, 700.0, 8),  # waits for a1, whose run time nothing tells
        tjob("a3", "a", 1_200.0, 100.0, 8),  # waits for a2; a's 8-GPU jobs ran 1 000 s
    ]
    result = replay(jobs, [tenant("a", 8)], [node("n0", 8)], build_profile("fifo-backfill"))
    out = {o.job_id: o for o in result.log.outcomes}
    assert not out["a1"].eta_recorded  # started at once: nothing to forecast
    assert out["a2"].eta_recorded and out["a2"].eta_start_s is None  # said "unknown"
    # a2 started at 1 000 and is planned to run 1 000 s (a1's), so a3 at 2 000; it really
    # started at 1 700 (a2 ran 700 s): 500 s, within a factor of two of the 800 s estimated.
    assert out["a3"].eta_start_s == pytest.approx(2_000.0)
    assert out["a3"].eta_late_s >= out["a3"].eta_start_s
    assert out["a3"].first_start_s == 1_700.0
    eta = summarize(result.log)["eta"]
    assert (eta["jobs"], eta["unknown"], eta["within_factor_2"]) == (2, 0.5, 0.5)


def test_attainment_within_counts_only_what_could_start_beside_the_allocation() -> None:
    # a holds 4 of its 8 guaranteed GPUs (a1) from 0 to 1,000 s; a2 asks 8 from 10 s: it
    # fits the guarantee alone, not beside a1, so its wait breaks no guarantee. a3 (4)
    # from 20 s could start beside a1: FIFO keeps it behind a2 until 1,000 s.
    trace = [
        tjob("a1", "a", 0.0, 1_000.0, 4),
        tjob("a2", "a", 10.0, 1_000.0, 8),
        tjob("a3", "a", 20.0, 1_000.0, 4),
    ]
    result = replay(trace, [tenant("a", 8)], [node("n0", 16)], build_profile("fifo"))
    owed = [(s.time_s, s.allocated_milli, s.demand_milli) for s in result.log.usage_within]
    # At 10 s nothing more fits beside a1; from 20 s a3's 4 GPUs do; a2 runs alone
    # from 1,000 s (a3 beside it would exceed the guarantee), then a3.
    assert owed == [
        (0.0, 4_000, 4_000),
        (20.0, 4_000, 8_000),
        (1_000.0, 8_000, 8_000),
        (2_000.0, 4_000, 4_000),
        (3_000.0, 0, 0),
    ]
    # Owed 4 GPUs x 980 s of the 4 x 20 + 8 x 980 + 8 x 1,000 + 4 x 1,000 wanted.
    want = 1 - 4 * 980 / (4 * 20 + 8 * 980 + 8 * 1_000 + 4 * 1_000)
    assert attainment_within_guarantee(result.log)["a"] == pytest.approx(want)
