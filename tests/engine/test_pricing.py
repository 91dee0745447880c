"""Preemption priced in GPU-time (the ``mosu`` profile): table-style scenarios with the
exact starts, preemptions and wake-up times expected, and the reservations a cycle
reports."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from mosu.core.reasons import PendingReason, PreemptReason
from mosu.engine.decisions import Held
from mosu.engine.profiles import VictimOrder, build_profile
from tests.engine.helpers import job, node
from tests.engine.test_tenancy import SCENARIOS, Running, Scenario, check, run, tenant

NOW = 10_000.0
FOUR = [node(f"n{i}", 8) for i in range(4)]
NOBODY_GUARANTEED = [tenant("a", 0), tenant("b", 0)]
AT_CHECKPOINT = replace(
    build_profile("mosu"),
    reclaim_at_checkpoint=True,
    checkpoint_wait_min_gpus=8,
    reclaim_wait_max_s=math.inf,
)
"""mosu whose reclaim waits for its victims' next checkpoint when that is cheaper and
a victim has 8 GPUs or more, however far off the checkpoint."""


def gang(since_checkpoint_s: float) -> Running:
    """b's 32-GPU gang on borrowed capacity, 5,400 s in (the last LAS class), its last
    checkpoint ``since_checkpoint_s`` ago (it checkpoints every hour)."""
    started = NOW - 3_600.0 - since_checkpoint_s
    return Running(job("g", 8, replicas=4, tenant="b"), started_s=started, checkpoint_every_s=3_600)


# Reclaim fixture: a is guaranteed one node; b's 16-GPU gang (the most served, 1,400 s
# since its checkpoint: 16 x 1,460 GPU-s to preempt) and c's 8-GPU job (1,000 s since:
# 8 x 1,060) both borrow.
RECLAIM_NODES = [node(f"n{i}", 8) for i in range(3)]
RECLAIM_TENANTS = [tenant("a", 8), tenant("b", 0), tenant("c", 0)]
RECLAIM_RUNNING = [
    Running(job("g", 8, replicas=2, tenant="b"), started_s=NOW - 5_000, checkpoint_every_s=3_600),
    Running(job("c1", 8, tenant="c", t=1), started_s=NOW - 1_000, checkpoint_every_s=3_600),
]

PRICED = [
    Scenario(
        "a gang is not preempted for a job that gains less than the gang would lose",
        "mosu",
        FOUR,
        NOBODY_GUARANTEED,
        # 32 x (1,800 + 60) GPU-s lost against 8 GPUs x 3,600 s gained.
        running=[gang(1_800.0)],
        pending=[job("a1", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_pending={"a1": PendingReason.RESERVED},
    ),
    Scenario(
        "... and is for one that gains more",
        "mosu",
        FOUR,
        NOBODY_GUARANTEED,
        running=[gang(1_800.0)],
        pending=[job("a1", 8, tenant="a", t=1, estimate=36_000)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "... or just after its checkpoint, when only the restart is lost",
        "mosu",
        FOUR,
        NOBODY_GUARANTEED,
        running=[gang(10.0)],
        pending=[job("a1", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "without pricing the gang is preempted for the short job",
        replace(
            build_profile("mosu"),
            price_preemption=False,
            victim_order=VictimOrder.SERVED,
        ),
        FOUR,
        NOBODY_GUARANTEED,
        running=[gang(1_800.0)],
        pending=[job("a1", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "reclaim pays a guarantee with the cheapest victim, not the most served gang",
        "mosu",
        RECLAIM_NODES,
        RECLAIM_TENANTS,
        running=RECLAIM_RUNNING,
        pending=[job("a1", 8, tenant="a", t=2)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"c1": PreemptReason.RECLAIM},
    ),
    Scenario(
        "served victim order takes the gang",
        replace(
            build_profile("mosu"),
            price_preemption=False,
            reclaim_at_checkpoint=False,
            victim_order=VictimOrder.SERVED,
        ),
        RECLAIM_NODES,
        RECLAIM_TENANTS,
        running=RECLAIM_RUNNING,
        pending=[job("a1", 8, tenant="a", t=2)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.RECLAIM},
    ),
    Scenario(
        "a one-GPU guarantee waits for the victim's checkpoint: 2,600 GPU-s idle "
        "against 8,480 lost",
        AT_CHECKPOINT,
        RECLAIM_NODES,
        RECLAIM_TENANTS,
        running=RECLAIM_RUNNING,
        pending=[job("a1", 1, tenant="a", t=2)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "... but not for a victim smaller than a gang (mosu: 16 GPUs)",
        "mosu",
        RECLAIM_NODES,
        RECLAIM_TENANTS,
        running=RECLAIM_RUNNING,
        pending=[job("a1", 1, tenant="a", t=2)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"c1": PreemptReason.RECLAIM},
    ),
    Scenario(
        "... and is reclaimed at once when reclaim never waits",
        replace(build_profile("mosu"), reclaim_at_checkpoint=False),
        RECLAIM_NODES,
        RECLAIM_TENANTS,
        running=RECLAIM_RUNNING,
        pending=[job("a1", 1, tenant="a", t=2)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"c1": PreemptReason.RECLAIM},
    ),
]


def borrowing_gang(since_checkpoint_s: float, nodes: int = 2, every_s: float = 3_600.0) -> Running:
    """b's gang filling ``nodes`` 8-GPU nodes on borrowed capacity, its last checkpoint
    ``since_checkpoint_s`` ago (it checkpoints every ``every_s``)."""
    started = NOW - every_s - since_checkpoint_s
    return Running(
        job("g", 8, replicas=nodes, tenant="b"), started_s=started, checkpoint_every_s=every_s
    )


TWO = [node("n0", 8), node("n1", 8)]
A_OWED = [tenant("a", 8), tenant("b", 0)]
A_OWED_24 = [tenant("a", 24), tenant("b", 0)]
NO_GPU_ALLOWANCE = replace(build_profile("mosu"), reclaim_wait_max_gpu_s=0.0)

# a is owed GPUs of its guarantee, held by b's gang, which checkpoints every two hours:
# reclaim now costs the gang its GPUs x (its time since the checkpoint + 60 s); waiting
# costs a's GPUs idle until then. mosu waits up to 3,600 s, or longer while a's idle
# GPUs stay within 2 GPU-hours.
# (a's 24-GPU job gains too little to displace the gang by rank: 24 x 1,000 GPU-s.)
WAIT_CAPPED = [
    Scenario(
        "the gang checkpoints in 600 s: a waits for it",
        NO_GPU_ALLOWANCE,
        TWO,
        A_OWED,
        running=[borrowing_gang(6_600.0, every_s=7_200.0)],
        pending=[job("a1", 1, tenant="a", t=1)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "the gang checkpoints in 4,600 s: the guarantee is paid now, not then",
        NO_GPU_ALLOWANCE,
        TWO,
        A_OWED,
        running=[borrowing_gang(2_600.0, every_s=7_200.0)],
        pending=[job("a1", 1, tenant="a", t=1)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.RECLAIM},
    ),
    Scenario(
        "... where a reclaim with no longest wait waits for it",
        replace(build_profile("mosu"), reclaim_wait_max_s=math.inf),
        TWO,
        A_OWED,
        running=[borrowing_gang(2_600.0, every_s=7_200.0)],
        pending=[job("a1", 1, tenant="a", t=1)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "... and mosu too: one GPU idle 4,600 s is within 2 GPU-hours",
        "mosu",
        TWO,
        A_OWED,
        running=[borrowing_gang(2_600.0, every_s=7_200.0)],
        pending=[job("a1", 1, tenant="a", t=1)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "two GPUs idle 4,600 s are not: mosu reclaims now",
        "mosu",
        TWO,
        A_OWED,
        running=[borrowing_gang(2_600.0, every_s=7_200.0)],
        pending=[job("a1", 2, tenant="a", t=1)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.RECLAIM},
    ),
    Scenario(
        "24 GPUs idle 3,800 s are not: mosu reclaims a 32-GPU gang now",
        "mosu",
        FOUR,
        A_OWED_24,
        running=[borrowing_gang(3_400.0, nodes=4, every_s=7_200.0)],
        pending=[job("a1", 8, replicas=3, tenant="a", t=1, estimate=1_000)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.RECLAIM},
    ),
    Scenario(
        "... which, with no longest wait, is cheaper at its checkpoint",
        replace(build_profile("mosu"), reclaim_wait_max_s=math.inf),
        FOUR,
        A_OWED_24,
        running=[borrowing_gang(3_400.0, nodes=4, every_s=7_200.0)],
        pending=[job("a1", 8, replicas=3, tenant="a", t=1, estimate=1_000)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "24 GPUs idle 3,000 s, within the hour: mosu waits for the checkpoint",
        "mosu",
        FOUR,
        A_OWED_24,
        running=[borrowing_gang(4_200.0, nodes=4, every_s=7_200.0)],
        pending=[job("a1", 8, replicas=3, tenant="a", t=1, estimate=1_000)],
        now=NOW,
        want_pending={"a1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
]


@pytest.mark.parametrize("s", WAIT_CAPPED, ids=lambda s: s.name)
def test_reclaim_waits_at_most_the_longest_wait(s: Scenario) -> None:
    check(s)


def test_a_capped_wait_asks_to_look_again_after_the_checkpoint() -> None:
    assert run(WAIT_CAPPED[0]).wake_at_s == NOW + 600.0 + 1.0
    assert run(WAIT_CAPPED[1]).wake_at_s is None
    assert run(WAIT_CAPPED[2]).wake_at_s == NOW + 4_600.0 + 1.0
    assert run(WAIT_CAPPED[3]).wake_at_s == NOW + 4_600.0 + 1.0
    assert run(WAIT_CAPPED[4]).wake_at_s is None
    assert run(WAIT_CAPPED[5]).wake_at_s is None
    assert run(WAIT_CAPPED[6]).wake_at_s == NOW + 3_800.0 + 1.0
    assert run(WAIT_CAPPED[7]).wake_at_s == NOW + 3_000.0 + 1.0


@pytest.mark.parametrize("s", PRICED, ids=lambda s: s.name)
def test_priced_scenario(s: Scenario) -> None:
    check(s)


def test_a_refused_preemption_asks_to_look_again_after_the_checkpoint() -> None:
    result = run(PRICED[0])
    # The gang checkpoints 1,800 s from now; a second later only its restart is lost.
    assert result.wake_at_s == NOW + 1_800.0 + 1.0


def test_a_put_off_reclaim_asks_to_look_again_after_the_checkpoint() -> None:
    result = run(PRICED[6])
    assert result.wake_at_s == NOW + 2_600.0 + 1.0


def test_a_cycle_that_decides_now_asks_for_no_wake() -> None:
    assert run(PRICED[1]).wake_at_s is None
    assert run(PRICED[4]).wake_at_s is None
    assert run(PRICED[7]).wake_at_s is None
    assert run(PRICED[8]).wake_at_s is None


def test_reservations_report_their_nodes_and_idle_gpus() -> None:
    s = next(c for c in SCENARIOS if c.profile == "fifo-backfill")
    result = run(s)
    # a1 is held n0 from 10,500; a4 (100 s) is backfilled onto its two free GPUs.
    assert result.reservations == (Held("a1", 10_500.0, ("n0",), 0),)


def test_reserved_gpus_left_idle_are_reported() -> None:
    s = next(c for c in SCENARIOS if c.profile == "fifo-backfill")
    # Without the short job the two free GPUs of the held node stay idle.
    result = run(replace(s, pending=[j for j in s.pending if j.id != "a4"]))
    assert result.reservations == (Held("a1", 10_500.0, ("n0",), 2_000),)


def hourly(job_id: str, gpus: int, replicas: int, since_checkpoint_s: float) -> Running:
    """a's job of ``gpus`` x ``replicas`` GPUs, in the last LAS class, its last hourly
    checkpoint ``since_checkpoint_s`` ago."""
    return Running(
        job(job_id, gpus, replicas=replicas, tenant="a"),
        started_s=NOW - 3_600.0 - since_checkpoint_s,
        checkpoint_every_s=3_600,
    )


SPARES_16 = replace(build_profile("mosu"), rank_spares_gpus=16)
"""mosu whose rank preemption never takes a job of 16 GPUs or more."""
A_ONLY = [tenant("a", 32), tenant("b", 0)]
# a's 16-GPU gang g (10 s past its checkpoint: 16 x 70 GPU-s to preempt) and its 8-GPU
# job s1 (1,000 s past: 8 x 1,060) fill three nodes; a's fresh 8-GPU job a2 ranks
# better than both.
THREE = [node(f"n{i}", 8) for i in range(3)]
SPARED = [
    Scenario(
        "rank preemption takes the cheapest victim, the gang just past its checkpoint",
        replace(SPARES_16, rank_spares_gpus=0),
        THREE,
        A_ONLY,
        running=[hourly("g", 8, 2, 10.0), hourly("s1", 8, 1, 1_000.0)],
        pending=[job("a2", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_starts=["a2"],
        want_preempt={"g": PreemptReason.PRIORITY},
    ),
    Scenario(
        "... but spares a gang of 16 GPUs or more, taking the dearer small job",
        SPARES_16,
        THREE,
        A_ONLY,
        running=[hourly("g", 8, 2, 10.0), hourly("s1", 8, 1, 1_000.0)],
        pending=[job("a2", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_starts=["a2"],
        want_preempt={"s1": PreemptReason.PRIORITY},
    ),
    Scenario(
        "... and leaves the job waiting when only gangs rank worse",
        SPARES_16,
        THREE,
        A_ONLY,
        running=[hourly("g", 8, 2, 10.0), Running(job("s0", 8, tenant="a"), NOW - 100.0)],
        pending=[job("a2", 8, tenant="a", t=1, estimate=3_600)],
        now=NOW,
        want_pending={"a2": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "... while a guarantee owed still reclaims a borrowing gang",
        replace(SPARES_16, reclaim_at_checkpoint=False),
        TWO,
        A_OWED,
        running=[borrowing_gang(1_000.0)],
        pending=[job("a1", 1, tenant="a", t=1)],
        now=NOW,
        want_starts=["a1"],
        want_preempt={"g": PreemptReason.RECLAIM},
    ),
]


@pytest.mark.parametrize("s", SPARED, ids=lambda s: s.name)
def test_rank_preemption_spares_gangs(s: Scenario) -> None:
    check(s)
