"""Table-style scenarios for guarantees, borrowing, reclaim, backfill and preemption."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from mosu.core.models import GPU_MILLI, Job, Node, Quota, RunningJob, Tenant
from mosu.core.reasons import PendingReason, PreemptReason
from mosu.engine.cycle import schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.ordering import ShortestRemainingOracle, ShortestRemainingServiceOracle
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import RankPreemption, SchedulingProfile, build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node


def tenant(
    name: str,
    guaranteed: int,
    limit: int | None = None,
    weight: float = 1.0,
    cohort: str | None = None,
) -> Tenant:
    quota = Quota(
        guaranteed_milli=guaranteed * GPU_MILLI,
        limit_milli=None if limit is None else limit * GPU_MILLI,
    )
    return Tenant(name=name, quotas=(("A100", quota),), weight=weight, cohort=cohort)


@dataclass
class Running:
    job: Job
    started_s: float = 0.0
    checkpoint_every_s: float | None = None


def running_jobs(nodes: list[Node], runs: list[Running]) -> tuple[RunningJob, ...]:
    """Place the running jobs in order with best fit, as a real cluster would hold them."""
    state = ClusterState(nodes)
    out = []
    for r in runs:
        j = replace(r.job, checkpoint_every_s=r.checkpoint_every_s)
        placement = place_job(state, j, BestFit())
        assert placement is not None, f"fixture job {j.id} does not fit"
        state.assign(j.id, placement)
        out.append(RunningJob(job=j, placement=placement, started_s=r.started_s))
    return tuple(out)


@dataclass
class Scenario:
    name: str
    profile: str | SchedulingProfile
    nodes: list[Node]
    tenants: list[Tenant]
    pending: list[Job]
    running: list[Running] = field(default_factory=list)
    now: float = 10_000.0
    want_starts: list[str] = field(default_factory=list)
    want_preempt: dict[str, PreemptReason] = field(default_factory=dict)
    want_pending: dict[str, PendingReason] = field(default_factory=dict)


def run(s: Scenario) -> CycleResult:
    profile = build_profile(s.profile) if isinstance(s.profile, str) else s.profile
    running = running_jobs(s.nodes, s.running)
    # Oracle profiles: a job's true remaining time is its estimate, or an hour.
    remaining = {j.id: j.estimate_s or 3_600.0 for j in (*s.pending, *(r.job for r in running))}
    if s.profile == "srtf-oracle":
        remaining = {j.id: 10.0 for j in s.pending} | {r.job.id: 10_000.0 for r in running}
    snap = ClusterSnapshot(
        now=s.now,
        nodes=tuple(s.nodes),
        tenants=tuple(s.tenants),
        running=running,
        pending=tuple(s.pending),
        true_remaining_s=remaining if profile.needs_true_remaining else {},
    )
    return schedule(snap, profile)


def check(s: Scenario) -> CycleResult:
    """Run ``s`` and hold it to its expected starts, preemptions and pending reasons."""
    result = run(s)
    assert [st.job_id for st in result.starts] == s.want_starts
    assert {p.job_id: p.reason for p in result.preemptions} == s.want_preempt
    got_pending = {p.job_id: p.reason for p in result.pending}
    for job_id, reason in s.want_pending.items():
        assert got_pending.get(job_id) == reason, (job_id, got_pending)
    return result


TWO_NODES = [node("n0", 8), node("n1", 8)]
AB = [tenant("a", 8), tenant("b", 8)]
NODES_3 = [node(f"n{i}", 8) for i in range(3)]
NODES_4 = [node(f"n{i}", 8) for i in range(4)]
COHORTS = [tenant("a", 8, cohort="x"), tenant("b", 8, cohort="x"), tenant("c", 8, cohort="y")]

SCENARIOS = [
    Scenario(
        "a job within its guarantee starts",
        "mosu",
        TWO_NODES,
        AB,
        pending=[job("a1", 4, tenant="a")],
        want_starts=["a1"],
    ),
    Scenario(
        "static partitions never borrow idle capacity",
        "fifo",
        TWO_NODES,
        AB,
        pending=[job("a1", 8, tenant="a"), job("a2", 4, tenant="a", t=1)],
        want_starts=["a1"],
        want_pending={"a2": PendingReason.QUOTA_EXCEEDED},
    ),
    Scenario(
        "with borrowing the same job runs on the idle tenant's share",
        "mosu",
        TWO_NODES,
        AB,
        pending=[job("a1", 8, tenant="a"), job("a2", 4, tenant="a", t=1)],
        want_starts=["a1", "a2"],
    ),
    Scenario(
        "a borrower is preempted only for its lender's guarantee",
        "mosu",
        TWO_NODES,
        AB,
        running=[
            Running(job("a1", 8, tenant="a")),
            Running(job("a2", 8, tenant="a", t=1), started_s=100),
        ],
        pending=[job("b1", 8, tenant="b", t=2)],
        want_starts=["b1"],
        want_preempt={"a2": PreemptReason.RECLAIM},
    ),
    Scenario(
        "a tenant above its guarantee cannot reclaim from another borrower",
        "kueue",
        TWO_NODES,
        [tenant("a", 4), tenant("b", 4)],
        running=[
            Running(job("a1", 8, tenant="a")),
            Running(job("b1", 8, tenant="b", t=1)),
        ],
        pending=[job("b2", 2, tenant="b", t=2)],
        want_pending={"b2": PendingReason.NO_FIT},
    ),
    Scenario(
        "reclaim picks the victim that loses the least work since its checkpoint",
        "mosu",
        TWO_NODES,
        [tenant("a", 8), tenant("b", 8)],
        running=[
            Running(job("a0", 8, tenant="a")),
            # Both borrowed; a1 checkpointed 100 s ago, a2 3,000 s ago.
            Running(job("a1", 4, tenant="a", t=1), started_s=0, checkpoint_every_s=1_900),
            Running(job("a2", 4, tenant="a", t=2), started_s=0, checkpoint_every_s=3_500),
        ],
        pending=[job("b1", 4, tenant="b", t=3)],
        now=9_600.0,
        want_starts=["b1"],
        want_preempt={"a1": PreemptReason.RECLAIM},
    ),
    Scenario(
        "a job younger than the minimum runtime is never reclaimed",
        "mosu",
        TWO_NODES,
        AB,
        running=[
            Running(job("a1", 8, tenant="a"), started_s=9_950.0),
            Running(job("a2", 8, tenant="a", t=1), started_s=9_950.0),
        ],
        pending=[job("b1", 8, tenant="b", t=2)],
        want_pending={"b1": PendingReason.WAITING_FOR_GUARANTEE},
    ),
    Scenario(
        "kueue reclaims the most recently started borrower",
        "kueue",
        TWO_NODES,
        AB,
        running=[
            Running(job("a0", 8, tenant="a")),
            Running(job("a1", 4, tenant="a", t=1), started_s=100, checkpoint_every_s=1),
            Running(job("a2", 4, tenant="a", t=2), started_s=200, checkpoint_every_s=1e9),
        ],
        pending=[job("b1", 4, tenant="b", t=3)],
        want_starts=["b1"],
        want_preempt={"a2": PreemptReason.RECLAIM},
    ),
    Scenario(
        "idle capacity goes first to the borrower with the lowest weighted share",
        replace(build_profile("mosu"), rank_preemption=RankPreemption.NONE),
        [node("n0", 8), node("n1", 8), node("n2", 8)],
        [tenant("a", 8), tenant("b", 8, weight=2.0), tenant("c", 8)],
        running=[
            Running(job("a0", 8, tenant="a")),
            Running(job("b0", 8, tenant="b")),
        ],
        pending=[job("a1", 8, tenant="a", t=1), job("b1", 8, tenant="b", t=2)],
        want_starts=["b1"],
        want_pending={"a1": PendingReason.RESERVED},
    ),
    Scenario(
        "strict fifo blocks the rest of the tenant behind its head",
        "fifo",
        TWO_NODES,
        [tenant("a", 32)],
        running=[Running(job("a0", 4, tenant="a"))],
        pending=[job("a1", 16, replicas=1, tenant="a", t=1), job("a2", 1, tenant="a", t=2)],
        want_pending={"a1": PendingReason.NEVER_FITS, "a2": PendingReason.QUEUED},
    ),
    Scenario(
        "backfill holds capacity for a blocked gang and starts what cannot delay it",
        "fifo-backfill",
        TWO_NODES,
        [tenant("a", 32)],
        running=[
            Running(job("a0", 6, tenant="a", estimate=1_000), started_s=9_500),
            Running(job("a9", 6, tenant="a", estimate=50_000), started_s=9_500),
        ],
        pending=[
            job("a1", 8, tenant="a", t=1, estimate=1_000),
            job("a2", 2, tenant="a", t=2, estimate=100_000),
            job("a3", 2, tenant="a", t=3, estimate=100_000),
            job("a4", 2, tenant="a", t=4, estimate=100),
        ],
        want_starts=["a2", "a4"],
        want_pending={
            "a1": PendingReason.RESERVED,
            "a3": PendingReason.BLOCKED_BY_RESERVATION,
        },
    ),
    Scenario(
        "a higher priority job displaces a lower one of its own tenant",
        "kueue",
        [node("n0", 8)],
        [tenant("a", 8)],
        running=[Running(job("a0", 8, tenant="a"))],
        pending=[job("a1", 8, tenant="a", t=1, priority=5)],
        want_starts=["a1"],
        want_preempt={"a0": PreemptReason.PRIORITY},
    ),
    Scenario(
        "a tenant at its quota displaces its own job with a longer remaining time",
        "srtf-oracle",
        [node("n0", 8)],
        [tenant("a", 8)],
        running=[Running(job("a0", 8, tenant="a"))],
        pending=[job("a1", 1, tenant="a", t=1)],
        want_starts=["a1"],
        want_preempt={"a0": PreemptReason.PRIORITY},
    ),
    Scenario(
        "two-dimensional SRTF: less remaining GPU-time displaces a wider job ending sooner",
        replace(
            build_profile("las"),
            ordering=ShortestRemainingServiceOracle(),
            needs_true_remaining=True,
        ),
        [node("n0", 8)],
        [tenant("a", 0), tenant("b", 0)],
        # a0: 1,000 s left on 8 GPUs (8,000 GPU-s); b1: 3,000 s on 1 GPU (3,000 GPU-s).
        running=[Running(job("a0", 8, tenant="a", estimate=1_000.0))],
        pending=[job("b1", 1, tenant="b", t=1, estimate=3_000.0)],
        want_starts=["b1"],
        want_preempt={"a0": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "one-dimensional SRTF keeps the wider job that ends sooner",
        replace(
            build_profile("las"), ordering=ShortestRemainingOracle(), needs_true_remaining=True
        ),
        [node("n0", 8)],
        [tenant("a", 0), tenant("b", 0)],
        running=[Running(job("a0", 8, tenant="a", estimate=1_000.0))],
        pending=[job("b1", 1, tenant="b", t=1, estimate=3_000.0)],
        want_starts=[],
        want_pending={"b1": PendingReason.NO_FIT},
    ),
    Scenario(
        "least attained service lets a fresh job displace a long-running one",
        "las",
        [node("n0", 8)],
        [tenant("a", 0), tenant("b", 0)],
        running=[Running(job("a0", 8, tenant="a"), started_s=0.0)],
        pending=[job("b1", 8, tenant="b", t=1)],
        want_starts=["b1"],
        want_preempt={"a0": PreemptReason.FAIR_SHARE},
    ),
    Scenario(
        "las demotes a job after 1 GPU-hour, so a fresh one displaces it",
        "las",
        [node("n0", 1)],
        [tenant("a", 1)],
        running=[Running(job("a0", 1, tenant="a"), started_s=10_000 - 5_400)],
        pending=[job("a1", 1, tenant="a", t=1)],
        want_starts=["a1"],
        want_preempt={"a0": PreemptReason.PRIORITY},
    ),
    Scenario(
        "mosu keeps a job in the first queue until 2 GPU-hours",
        "mosu",
        [node("n0", 1)],
        [tenant("a", 1)],
        running=[Running(job("a0", 1, tenant="a"), started_s=10_000 - 5_400)],
        pending=[job("a1", 1, tenant="a", t=1)],
        want_pending={"a1": PendingReason.NO_FIT},
    ),
    Scenario(
        "past 2 GPU-hours a fresh job of its tenant displaces it just after a checkpoint",
        "mosu",
        [node("n0", 1)],
        [tenant("a", 1)],
        running=[
            Running(job("a0", 1, tenant="a"), started_s=10_000 - 9_000, checkpoint_every_s=600)
        ],
        pending=[job("a1", 1, tenant="a", t=1)],
        want_starts=["a1"],
        want_preempt={"a0": PreemptReason.PRIORITY},
    ),
    Scenario(
        "among equally ranked victims losing equal work, the most served goes",
        "mosu",
        [node("n0", 8)],
        [tenant("a", 8)],
        now=60_000.0,
        running=[
            # Both just checkpointed (every 600 s); a1 has run longer.
            Running(job("a0", 1, tenant="a"), started_s=60_000 - 40_200, checkpoint_every_s=600),
            Running(job("a1", 1, tenant="a"), started_s=60_000 - 49_800, checkpoint_every_s=600),
            Running(job("a2", 6, tenant="a"), started_s=60_000 - 200),
        ],
        pending=[job("a3", 1, tenant="a", t=1)],
        want_starts=["a3"],
        want_preempt={"a1": PreemptReason.PRIORITY},
    ),
    Scenario(
        "a cohort lends its idle guarantee to its own members",
        "mosu",
        NODES_3,
        COHORTS,
        pending=[job("b1", 8, tenant="b"), job("b2", 8, tenant="b", t=1)],
        want_starts=["b1", "b2"],
    ),
    Scenario(
        "a cohort's idle guarantee is not lent outside it",
        "mosu",
        NODES_3,
        COHORTS,
        pending=[job("c1", 8, tenant="c"), job("c2", 8, tenant="c", t=1)],
        want_starts=["c1"],
        want_pending={"c2": PendingReason.QUOTA_EXCEEDED},
    ),
    Scenario(
        "capacity guaranteed to nobody is lent to every cohort",
        "kueue",
        NODES_4,
        COHORTS,
        pending=[job(f"c{i}", 8, tenant="c", t=i) for i in range(3)],
        want_starts=["c0", "c1"],
        want_pending={"c2": PendingReason.QUOTA_EXCEEDED},
    ),
    Scenario(
        "reclaim takes back from a borrower of the lender's own cohort first",
        "mosu",
        NODES_4,
        COHORTS,
        running=[
            # c's jobs would lose less work, but they run on capacity nobody is
            # guaranteed; b's borrowed jobs run on a's idle guarantee.
            Running(job("c1", 8, tenant="c"), started_s=5_000),
            Running(job("c2", 8, tenant="c", t=1), started_s=5_000),
            Running(job("b1", 8, tenant="b", t=2), started_s=0),
            Running(job("b2", 8, tenant="b", t=3), started_s=0),
        ],
        pending=[job("a1", 8, tenant="a", t=4)],
        want_starts=["a1"],
        want_preempt={"b1": PreemptReason.RECLAIM},
    ),
    Scenario(
        # b reclaims first (the lower share) and then finds its guarantee spent; that
        # says nothing about a, whose last job must still reclaim c's other borrower.
        "a tenant out of guarantee does not stop another tenant's reclaim",
        replace(build_profile("mosu"), min_runtime_s=0.0),
        [node("n0", 4), node("n1", 4)],
        [tenant("a", 4), tenant("b", 3), tenant("c", 0)],
        running=[
            Running(job("r0", 1, tenant="a"), started_s=9_940),
            Running(job("r1", 2, tenant="c", t=1), started_s=9_940),
            Running(job("r2", 4, tenant="c", t=2)),
        ],
        pending=[
            *(job(f"a{i}", 1, tenant="a", t=100 + i) for i in range(3)),
            *(job(f"b{i}", 1, tenant="b", t=103 + i) for i in range(4)),
        ],
        # b3 waited for b's guarantee in admission, so it is not lent the GPU left
        # idle this cycle.
        want_starts=["a0", "b0", "b1", "b2", "a1", "a2"],
        want_preempt={"r2": PreemptReason.RECLAIM, "r1": PreemptReason.RECLAIM},
        want_pending={"b3": PendingReason.NO_FIT},
    ),
    *(
        Scenario(
            # Two of the gang's replicas go to the free nodes; one victim makes room for
            # the third. Planned on the victims' nodes alone, b would have had to give
            # up both its borrowed jobs, and could not (it keeps its guarantee): no plan.
            f"a gang owed its guarantee takes free nodes and reclaims only the rest ({name})",
            replace(build_profile(name), min_runtime_s=0.0),
            NODES_4,
            [tenant("a", 24), tenant("b", 8)],
            running=[
                Running(job("b1", 8, tenant="b"), started_s=4_000),
                Running(job("b2", 8, tenant="b", t=1), started_s=9_000),
            ],
            pending=[job("a1", 8, replicas=3, tenant="a", t=2)],
            want_starts=["a1"],
            want_preempt={"b2": PreemptReason.RECLAIM},
        )
        for name in ("mosu", "kueue")
    ),
]


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_scenario(s: Scenario) -> None:
    check(s)


def test_reserved_job_carries_its_estimated_start() -> None:
    result = run(next(c for c in SCENARIOS if c.profile == "fifo-backfill"))
    reserved = {p.job_id: p.estimated_start_s for p in result.pending}
    assert reserved["a1"] == pytest.approx(10_500.0)


def test_backfilled_job_does_not_delay_the_reservation() -> None:
    s = next(c for c in SCENARIOS if c.profile == "fifo-backfill")
    result = run(s)
    reserved = next(p for p in result.pending if p.reason == PendingReason.RESERVED)
    # Apply the starts, finish every job expected to end by the reservation, and check
    # that the reserved gang fits then.
    runs = list(running_jobs(s.nodes, s.running))
    state = ClusterState(s.nodes)
    for r in runs:
        state.assign(r.job.id, r.placement)
    by_id = {j.id: j for j in s.pending}
    for st in result.starts:
        state.assign(st.job_id, st.placement)
        est = by_id[st.job_id].estimate_s or 0
        if s.now + est <= reserved.estimated_start_s:
            state.release(st.job_id)
    for r in runs:
        if r.started_s + (r.job.estimate_s or 0) <= reserved.estimated_start_s:
            state.release(r.job.id)
    assert place_job(state, by_id[reserved.job_id], BestFit()) is not None


def test_base_state_is_left_unchanged() -> None:
    s = SCENARIOS[3]
    runs = running_jobs(s.nodes, s.running)
    state = ClusterState(s.nodes)
    for r in runs:
        state.assign(r.job.id, r.placement)
    state.commit()
    before = (dict(state.holdings), [list(f) for f in state.gpu_free])
    snap = ClusterSnapshot(
        now=s.now,
        nodes=tuple(s.nodes),
        tenants=tuple(s.tenants),
        running=runs,
        pending=tuple(s.pending),
        base_state=state,
    )
    result = schedule(snap, build_profile("mosu"))
    assert [p.job_id for p in result.preemptions] == ["a2"]
    assert (dict(state.holdings), [list(f) for f in state.gpu_free]) == before


def test_unknown_profile_names_the_choices() -> None:
    from mosu.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="fifo-backfill"):
        build_profile("nope")
