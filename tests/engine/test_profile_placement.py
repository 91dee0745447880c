"""The ``mosu`` profile places with the ``mosu`` placement, learning the task mix from
the queue; ``build_profile(..., placement=NAME)`` swaps it. Table-style: cluster,
tenant, queue, the exact node each start lands on under each placement."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.core.errors import InvalidInput
from mosu.core.models import GPU_MILLI, Job, Node, Quota, RunningJob, Tenant
from mosu.engine.cycle import schedule
from mosu.engine.placement import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.placement.mosu import Mosu
from mosu.engine.placement.taskmix import RELEARN_SHARE, RecentMix, TaskType
from mosu.engine.profiles import PROFILES, build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node

TENANT = Tenant("t", (("A100", Quota(64 * GPU_MILLI, None)), ("T4", Quota(64 * GPU_MILLI, None))))
SMALL_CPU = node("small", 4, cpu=32_000)
"""A node whose CPU runs out before its GPUs under a CPU-hungry mix."""


@dataclass
class Case:
    name: str
    nodes: list[Node]
    pending: list[Job]
    running: list[Job] = field(default_factory=list)
    want: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """placement -> job -> the nodes of its replicas."""


CASES = [
    Case(
        "a CPU-hungry job goes where it strands no GPU, not to the tightest node",
        [node("big", 8, cpu=96_000), SMALL_CPU],
        [job("p1", 1, cpu=16_000), job("p2", 2, cpu=8_000, t=1, gpu_types=("T4",))],
        want={
            "mosu": {"p1": ["big"]},
            "tightest": {"p1": ["small"]},
        },
    ),
    Case(
        "a gang too big for one node spreads, each replica on a whole node",
        [node("a", 8), node("b", 8), node("c", 4)],
        [job("g", 8, replicas=2)],
        want={
            "mosu": {"g": ["a", "b"]},
            "tightest": {"g": ["a", "b"]},
        },
    ),
    Case(
        "a 2-GPU job leaves a half-used node's 4 GPUs to the 4-GPU jobs of the mix",
        [node("n0", 8), node("n1", 8)],
        [job("w", 2)],
        running=[job("r", 4)],  # on n0
        want={
            "mosu": {"w": ["n1"]},
            "tightest": {"w": ["n0"]},
        },
    ),
]


def run(case: Case, placement: str) -> dict[str, list[str]]:
    state = ClusterState(case.nodes)
    running = []
    for j in case.running:
        # Best fit, as a cluster would hold them: the first node on a tie.
        p = place_job(state, j, BestFit())
        assert p is not None
        state.assign(j.id, p)
        running.append(RunningJob(j, p, 0.0))
    snap = ClusterSnapshot(
        now=1_000.0,
        nodes=tuple(case.nodes),
        tenants=(TENANT,),
        running=tuple(running),
        pending=tuple(case.pending),
    )
    profile = (
        build_profile("mosu") if placement == "mosu" else build_profile("mosu", placement=placement)
    )
    result = schedule(snap, profile)
    return {s.job_id: [rp.node for rp in s.placement] for s in result.starts}


@pytest.mark.parametrize(
    ("case", "placement"),
    [(c, p) for c in CASES for p in c.want],
    ids=[f"{c.name} [{p}]" for c in CASES for p in c.want],
)
def test_start_nodes(case: Case, placement: str) -> None:
    assert run(case, placement) == case.want[placement]


def test_the_mosu_profile_places_with_the_mosu_placement() -> None:
    profile = build_profile("mosu")
    assert isinstance(profile.placement, Mosu)
    assert profile.ordering.name == "las-mosu"
    for name in PROFILES:
        if name != "mosu":
            assert isinstance(build_profile(name).placement, BestFit), name


def test_a_placement_override_names_its_policy() -> None:
    assert build_profile("fifo", placement="fgd").placement.name == "fgd"
    with pytest.raises(InvalidInput, match=r"unknown placement 'nope'; choose one of: random"):
        build_profile("mosu", placement="nope")


def test_each_profile_built_gets_its_own_learning_placement() -> None:
    # A placement keeps what it learns; two runs must never share one.
    assert build_profile("mosu").placement is not build_profile("mosu").placement


def test_recent_mix_counts_replicas_of_the_last_jobs_and_says_when_to_relearn() -> None:
    mix = RecentMix(window=2)
    assert mix.observe([job("a", 1), job("b", 2, replicas=3)])  # new types
    assert dict(mix.mix().counts) == {TaskType(0, 0, 1, 1000): 1, TaskType(0, 0, 2, 1000): 3}
    assert not mix.observe([job("a", 1), job("b", 2, replicas=3)])  # seen: nothing moved
    assert mix.observe([job("c", 2)])  # a third job turns the window over
    assert dict(mix.mix().counts) == {TaskType(0, 0, 2, 1000): 4}


def test_running_jobs_teach_the_mix_only_to_a_scheduler_that_has_seen_nothing() -> None:
    held = (RunningJob(job("r", 4), (), 0.0),)
    cold = RecentMix()
    assert cold.observe_cycle([job("p", 1)], held)  # started with work running
    assert dict(cold.mix().counts) == {TaskType(0, 0, 4, 1000): 1, TaskType(0, 0, 1, 1000): 1}
    warm = RecentMix()
    warm.observe_cycle([job("p", 1)], ())
    warm.observe_cycle([], (RunningJob(job("p", 1), (), 0.0), *held))
    assert dict(warm.mix().counts) == {TaskType(0, 0, 1, 1000): 1}


@settings(max_examples=300, deadline=None)
@given(
    window=st.integers(1, 12),
    calls=st.lists(st.lists(st.integers(0, 30), max_size=40), max_size=6),
)
def test_recent_mix_learns_a_long_queue_as_it_learns_one_job_at_a_time(
    window: int, calls: list[list[int]]
) -> None:
    # Job k always has the same shape, so ids seen again (or twice in one call) agree.
    def queue(ids: list[int]) -> list[Job]:
        return [job(f"j{k}", 1 + k % 3, replicas=1 + k % 2) for k in ids]

    fast, slow = RecentMix(window=window), RecentMix(window=window)
    for ids in calls:
        jobs = queue(ids)
        moved = fast.observe(jobs)
        slow._observe_each(jobs)
        slow_moved = slow._new_type or slow._turned >= max(1.0, RELEARN_SHARE * len(slow._seen))
        if slow_moved:
            slow._new_type, slow._turned = False, 0
        assert moved == slow_moved
        assert list(fast._seen.items()) == list(slow._seen.items())
        assert fast.mix() == slow.mix()
        assert (fast._turned, fast._new_type) == (slow._turned, slow._new_type)
