"""Preemptible backfill: cheap jobs start on nodes held for a large gang, and the gang
takes them back when that lets it start."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mosu.core.models import GPU_MILLI, ReplicaPlacement, Shape
from mosu.core.reasons import PendingReason, PreemptReason
from mosu.engine.cycle.reservations import Avoiding
from mosu.engine.placement.base import fits_quietly, place_job
from mosu.engine.policies import PolicyContext, TaskMix, make_placement
from mosu.engine.preemption import Victim, find_victims
from mosu.engine.profiles import RankPreemption, build_profile
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node
from tests.engine.test_tenancy import Running, Scenario, check, run, tenant

NOW = 10_000.0
FOUR = [node(f"n{i}", 8) for i in range(4)]
BACKFILL = replace(build_profile("mosu"), backfill_loss_gpu_s=8 * 3_600.0, backfill_gang_gpus=16)
"""mosu with preemptible backfill: jobs that can lose at most 8 GPU-hours, on nodes
held for gangs of 16 GPUs or more."""
OFF = replace(BACKFILL, backfill_loss_gpu_s=0.0)
NONE_GUARANTEED = [tenant("a", 0), tenant("b", 0), tenant("c", 0)]

# c's 16-GPU job holds two nodes and is planned to end in 600 s; a's 32-GPU gang is
# reserved the whole cluster from then (its 32 x 600 GPU-s do not pay for the
# 16 x 3,060 that preempting c's job would throw away). b's 8-GPU job would run
# 1,800 s, past that.
HELD = dict(
    nodes=FOUR,
    running=[Running(job("r1", 8, replicas=2, tenant="c", estimate=3_600), started_s=NOW - 3_000)],
    pending=[
        job("g", 8, replicas=4, tenant="a", t=1, estimate=600),
        job("s1", 8, tenant="b", t=2, estimate=1_800),
    ],
)


def cheap(job_id: str, tenant: str = "b", ran_s: float = 600.0) -> Running:
    """An 8-GPU job with no checkpoint that has run ``ran_s``: 8 x (ran_s + 60) to preempt."""
    return Running(job(job_id, 8, tenant=tenant, estimate=1_800), started_s=NOW - ran_s)


# c's 16-GPU job holds two nodes (too dear to preempt for a's 16-GPU gang); b's two
# cheap jobs hold the other two.
TAKE = dict(
    nodes=FOUR,
    running=[
        Running(job("r1", 8, replicas=2, tenant="c", estimate=36_000), started_s=NOW - 9_000),
        cheap("s1"),
        cheap("s2"),
    ],
    pending=[job("g", 8, replicas=2, tenant="a", t=1)],
)

SCENARIOS = [
    Scenario(
        "a job that would delay a reservation waits without preemptible backfill",
        OFF,
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_pending={"g": PendingReason.RESERVED, "s1": PendingReason.BLOCKED_BY_RESERVATION},
        **HELD,
    ),
    Scenario(
        # Two of its replicas take the free nodes, so only c's job is in the way.
        "... unless the gang's expected run pays for preempting what holds the rest",
        OFF,
        tenants=NONE_GUARANTEED,
        now=NOW,
        nodes=FOUR,
        running=HELD["running"],
        pending=[job("g", 8, replicas=4, tenant="a", t=1, estimate=3_600)],
        want_starts=["g"],
        want_preempt={"r1": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "... and starts on the held nodes as preemptible backfill (8 x 1,860 GPU-s at most)",
        BACKFILL,
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_starts=["s1"],
        want_pending={"g": PendingReason.RESERVED},
        **HELD,
    ),
    Scenario(
        "... but not when it could lose more than that",
        replace(BACKFILL, backfill_loss_gpu_s=4 * 3_600.0),
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_pending={"g": PendingReason.RESERVED, "s1": PendingReason.BLOCKED_BY_RESERVATION},
        **HELD,
    ),
    Scenario(
        "... nor on nodes held for a gang smaller than the profile's",
        replace(BACKFILL, backfill_gang_gpus=64),
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_pending={"g": PendingReason.RESERVED, "s1": PendingReason.BLOCKED_BY_RESERVATION},
        **HELD,
    ),
    Scenario(
        "a blocked gang takes back cheap jobs to start now",
        BACKFILL,
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_starts=["g"],
        want_preempt={"s1": PreemptReason.BACKFILL, "s2": PreemptReason.BACKFILL},
        **TAKE,
    ),
    Scenario(
        "... not a job of a tenant within its guarantee",
        BACKFILL,
        tenants=[tenant("a", 0), tenant("b", 8), tenant("c", 0)],
        now=NOW,
        want_pending={"g": PendingReason.RESERVED},
        **TAKE,
    ),
    Scenario(
        "... nor one that would lose more than backfill may",
        BACKFILL,
        tenants=NONE_GUARANTEED,
        nodes=FOUR,
        running=[TAKE["running"][0], cheap("s1", ran_s=6_000), cheap("s2")],
        pending=TAKE["pending"],
        now=NOW,
        want_pending={"g": PendingReason.RESERVED},
    ),
    Scenario(
        "... and none without preemptible backfill",
        OFF,
        tenants=NONE_GUARANTEED,
        now=NOW,
        want_pending={"g": PendingReason.RESERVED},
        **TAKE,
    ),
]


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_backfill_scenario(s: Scenario) -> None:
    check(s)


def test_a_gang_takes_back_at_the_victims_checkpoints_when_that_is_cheaper() -> None:
    # s1 and s2 checkpoint hourly, 1,000 s ago: 2 x 8 x 1,060 GPU-s lost now, against
    # 2 x 8 x 60 at their next checkpoint, 2,600 s away, while they hold all g needs.
    # (Without rank preemption, which would take them now for g's better LAS class.)
    hourly = [
        Running(job(k, 8, tenant="b", estimate=1_800), NOW - 1_000, checkpoint_every_s=3_600)
        for k in ("s1", "s2")
    ]
    s = Scenario(
        "at checkpoints",
        replace(BACKFILL, rank_preemption=RankPreemption.NONE),
        FOUR,
        NONE_GUARANTEED,
        running=[TAKE["running"][0], *hourly],
        pending=TAKE["pending"],
        now=NOW,
    )
    result = run(s)
    assert (result.starts, result.preemptions) == ((), ())
    assert result.wake_at_s == NOW + 2_601.0
    later = run(replace(s, now=NOW + 2_601.0))
    assert [st.job_id for st in later.starts] == ["g"]
    assert {p.job_id: p.reason for p in later.preemptions} == {
        "s1": PreemptReason.BACKFILL,
        "s2": PreemptReason.BACKFILL,
    }


# a holds n0 with a 4-GPU job 2,000 s into a 1,000 s estimate (so expected to run
# 2,000 s more) and n1 with a job expected to run 9,900 s more; a's 8-GPU job is held
# n0 from when the overrun job ends.
OVERRUN = dict(
    nodes=[node("n0", 8), node("n1", 8)],
    tenants=[tenant("a", 32)],
    running=[
        Running(job("r1", 4, tenant="a", estimate=1_000), started_s=NOW - 2_000),
        Running(job("r2", 8, tenant="a", estimate=10_000), started_s=NOW - 100),
    ],
    now=NOW,
)
OVERRUNS = replace(build_profile("fifo-backfill"), overrun_min_gpus=0)
"""fifo-backfill planning every job past its estimate to run as long again."""
OVERRUN_CASES = [
    Scenario(
        "a job that ends before the overrun job would is backfilled beside it",
        OVERRUNS,
        pending=[job("big", 8, tenant="a", t=1), job("s", 4, tenant="a", t=2, estimate=1_500)],
        want_starts=["s"],
        want_pending={"big": PendingReason.RESERVED},
        **OVERRUN,
    ),
    Scenario(
        "one that would run past it is not",
        OVERRUNS,
        pending=[job("big", 8, tenant="a", t=1), job("s", 4, tenant="a", t=2, estimate=2_500)],
        want_pending={
            "big": PendingReason.RESERVED,
            "s": PendingReason.BLOCKED_BY_RESERVATION,
        },
        **OVERRUN,
    ),
]


SMALL_END_AT_ONCE = replace(OVERRUNS, overrun_min_gpus=8)
"""Only jobs of 8 GPUs or more past their estimate are planned to run as long again."""
OVERRUN_CASES.append(
    Scenario(
        "a 4-GPU job past its estimate is planned to end at once where only gangs of 8 "
        "GPUs or more overrun: the reservation begins now and nothing is backfilled",
        SMALL_END_AT_ONCE,
        pending=[job("big", 8, tenant="a", t=1), job("s", 4, tenant="a", t=2, estimate=1_500)],
        want_pending={
            "big": PendingReason.RESERVED,
            "s": PendingReason.BLOCKED_BY_RESERVATION,
        },
        **OVERRUN,
    )
)
OVERRUN_CASES.append(
    replace(
        OVERRUN_CASES[-1],
        name="as every job is where no job is planned to overrun (fifo-backfill)",
        profile="fifo-backfill",
    )
)
HELD_FROM = [NOW + 2_000.0, NOW + 2_000.0, NOW, NOW]


@pytest.mark.parametrize(
    ("s", "held_from"),
    [pytest.param(s, t, id=s.name) for s, t in zip(OVERRUN_CASES, HELD_FROM, strict=True)],
)
def test_a_job_past_its_estimate_is_planned_to_run_as_long_again(
    s: Scenario, held_from: float
) -> None:
    result = run(s)
    assert [st.job_id for st in result.starts] == s.want_starts
    assert result.preemptions == ()
    pending = {p.job_id: p.reason for p in result.pending}
    assert pending == s.want_pending
    held = {h.job_id: (h.start_s, h.nodes) for h in result.reservations}
    assert held == {"big": (held_from, ("n0",))}


def _victim_search(seed: int, with_known: bool) -> tuple[object, ...]:
    """One random victim search for a gang, with or without ``known``: the plan and
    the placement policy as the search left it."""
    rng = random.Random(seed)
    # Enough nodes that the policy's reweighing step exceeds a few replicas: only
    # then does ``known`` answer for gangs.
    nodes = [node(f"n{i}", 8, cpu=64_000) for i in range(120)]
    state = ClusterState(nodes)
    victims = []
    for i, n in enumerate(nodes):
        left = rng.randrange(3)
        while (free := [g for g, f in enumerate(state.gpu_free[i]) if f == GPU_MILLI])[left:]:
            gpus = tuple(free[: rng.choice((1, 2, 4))])
            k = len(victims)
            placement = (ReplicaPlacement(n.name, gpus, GPU_MILLI, 1_000),)
            state.assign(f"v{k}", placement)
            cost = (rng.random(), f"v{k}")
            victims.append(Victim(f"v{k}", "t", placement, len(gpus) * GPU_MILLI, cost, "A100"))
    victims.sort(key=lambda v: v.cost)
    mix = TaskMix.observe([(Shape(1), ()), (Shape(4), ()), (Shape(8), ())])
    policy = make_placement("mosu", PolicyContext(task_mix=mix, rng=random.Random(seed)))
    held = frozenset(rng.sample(range(len(nodes)), k=rng.randrange(20)))
    gang = job("g", rng.choice((2, 4, 8)), replicas=rng.randrange(2, 5))
    plan = find_victims(
        state,
        victims,
        lambda: place_job(state, gang, Avoiding(policy, held)),
        need_milli=gang.total_gpu_milli,
        free_milli=state.free_milli,
        known=(lambda settle: fits_quietly(state, gang, policy, sorted(held), settle=settle))
        if with_known
        else None,
    )
    found = None if plan is None else ([v.job_id for v in plan[0]], plan[1])
    # The fingerprint names the state it was weighed on by id: two states, two ids.
    mixes, weights, weighed = policy.fingerprint()
    return found, mixes, weights, None if weighed is None else weighed[1]


@pytest.mark.parametrize("seed", range(30))
def test_a_victim_search_told_what_fits_finds_what_it_finds_searching(seed: int) -> None:
    assert _victim_search(seed, True) == _victim_search(seed, False)
