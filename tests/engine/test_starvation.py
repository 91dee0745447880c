"""Starved jobs and idle tenants: who goes first when waiting has gone on long enough
(Tiresias-style promotion) and when every borrower's share is the same."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosu.core.models import Job, RunningJob
from mosu.engine.cycle import schedule
from mosu.engine.ordering import LeastAttainedService
from mosu.engine.profiles import LendOrder, SchedulingProfile, build_profile
from mosu.engine.snapshot import ClusterSnapshot
from tests.engine.helpers import job, node
from tests.engine.test_tenancy import Running, running_jobs, tenant

DAY = 86_400.0


def mosu(
    *, starve_after_s: float | None = None, lend: LendOrder | None = None
) -> SchedulingProfile:
    profile = build_profile("mosu")
    if starve_after_s is not None:
        assert isinstance(profile.ordering, LeastAttainedService)
        profile = replace(
            profile, ordering=replace(profile.ordering, starve_after_s=starve_after_s)
        )
    if lend is not None:
        profile = replace(profile, lend_order=lend)
    return profile


@dataclass
class Case:
    name: str
    profile: SchedulingProfile
    pending: list[Job]
    attained: dict[str, float] = field(default_factory=dict)
    running: list[Running] = field(default_factory=list)
    now: float = 100_000.0
    want_starts: list[str] = field(default_factory=list)


ONE_NODE_A = ([node("n0", 8)], [tenant("a", 8)])
TWO_NODES_AB = ([node("n0", 8), node("n1", 8)], [tenant("a", 4), tenant("b", 4)])

# a_old ran 50,000 GPU-seconds before it was preempted (the last LAS class); a_new
# has not run (the first).
OLD_AND_NEW = [job("a_old", 8, tenant="a", t=0.0), job("a_new", 8, tenant="a", t=90_000.0)]

CASES = [
    (
        ONE_NODE_A,
        Case(
            "without promotion a fresh job outranks one that ran before",
            mosu(),
            OLD_AND_NEW,
            attained={"a_old": 50_000.0},
            want_starts=["a_new"],
        ),
    ),
    (
        ONE_NODE_A,
        Case(
            "a job waiting past the starvation bound ranks first again, by submit time",
            mosu(starve_after_s=DAY),
            OLD_AND_NEW,
            attained={"a_old": 50_000.0},
            want_starts=["a_old"],
        ),
    ),
    (
        ONE_NODE_A,
        Case(
            "a job within the bound is not promoted",
            mosu(starve_after_s=2 * DAY),
            OLD_AND_NEW,
            attained={"a_old": 50_000.0},
            want_starts=["a_new"],
        ),
    ),
    (
        TWO_NODES_AB,
        Case(
            "idle borrowers with equal shares go by name under fair share",
            mosu(lend=LendOrder.FAIR_SHARE),
            [job("a1", 8, replicas=2, tenant="a", t=50.0), job("b1", 8, replicas=2, tenant="b")],
            want_starts=["a1"],
        ),
    ),
    (
        TWO_NODES_AB,
        Case(
            "idle borrowers with equal shares go by their best-ranked job (the oldest)",
            mosu(lend=LendOrder.FAIR_SHARE_RANK),
            [job("a1", 8, replicas=2, tenant="a", t=50.0), job("b1", 8, replicas=2, tenant="b")],
            want_starts=["b1"],
        ),
    ),
    (
        TWO_NODES_AB,
        Case(
            "mosu lends the drained cluster to the oldest waiting gang",
            mosu(),
            [job("a1", 8, replicas=2, tenant="a", t=50.0), job("b1", 8, replicas=2, tenant="b")],
            want_starts=["b1"],
        ),
    ),
    (
        TWO_NODES_AB,
        Case(
            "a lower share still borrows first whatever its jobs' rank",
            mosu(lend=LendOrder.FAIR_SHARE_RANK),
            [job("a2", 8, tenant="a"), job("b1", 8, tenant="b", t=50.0)],
            # a holds 4 GPUs, b none: b is lent the one free node though a2 is older.
            running=[Running(job("a1", 4, tenant="a"))],
            want_starts=["b1"],
        ),
    ),
]


@pytest.mark.parametrize("cluster,case", CASES, ids=lambda c: getattr(c, "name", ""))
def test_case(cluster: tuple, case: Case) -> None:
    nodes, tenants = cluster
    snap = ClusterSnapshot(
        now=case.now,
        nodes=tuple(nodes),
        tenants=tuple(tenants),
        pending=tuple(case.pending),
        running=running_jobs(nodes, case.running),
        attained_gpu_s=case.attained,
    )
    result = schedule(snap, case.profile)
    assert [s.job_id for s in result.starts] == case.want_starts
    assert result.preemptions == ()


class _Inputs:
    def __init__(self, now: float, service: dict[str, float]) -> None:
        self.now = now
        self._service = service
        self.true_remaining: dict[str, float] = {}

    def service_gpu_s(self, job: Job) -> float:
        return self._service[job.id]

    def estimate_s(self, job: Job) -> float | None:
        return None

    def true_remaining_s(self, job: Job) -> float:
        raise AssertionError("not an oracle")


@given(
    st.lists(
        st.tuples(st.floats(0, 200_000), st.floats(0, 100_000), st.integers(-1, 1)),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([DAY, 3_600.0, 1e9]),
)
def test_rank_all_is_rank_for_every_job(
    rows: list[tuple[float, float, int]], starve_after_s: float
) -> None:
    order = LeastAttainedService(
        thresholds_gpu_s=(7_200.0, 36_000.0), starve_after_s=starve_after_s
    )
    jobs = [job(f"j{i}", 1, t=t, priority=p) for i, (t, _, p) in enumerate(rows)]
    inputs = _Inputs(now=200_000.0, service={f"j{i}": s for i, (_, s, _) in enumerate(rows)})
    assert order.rank_all(jobs, inputs) == {j.id: order.rank(j, inputs) for j in jobs}


def test_a_promoted_job_never_outranks_a_running_job_as_old() -> None:
    # Promoting only the waiting job would let it displace an older running one that,
    # once pending, would be promoted and displace it back, cycle after cycle.
    order = LeastAttainedService(thresholds_gpu_s=(7_200.0, 36_000.0), starve_after_s=DAY)
    old, young = job("old", 8, t=0.0), job("young", 8, t=150_000.0)
    running = {
        j.id: RunningJob(job=j, placement=(), started_s=160_000.0, attained_gpu_s=50_000.0)
        for j in (old, young)
    }
    inputs = _Inputs(now=200_000.0, service={"waiting": 50_000.0})
    classes = order.running_classes(running, inputs)
    waiting = order.rank(job("waiting", 8, t=1_000.0), inputs)[: order.class_len]
    assert classes["old"] == waiting == (0, 0)
    assert classes["young"] == (0, 2)
