"""Start-time estimates follow how a job will really get capacity, say how sure they
are, and say "unknown" rather than invent a number. Table-style: cluster, tenants,
running jobs, queue, and the exact likely start and late bound expected."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from mosu.core.models import GPU_MILLI, Job, JobKind, Node, Quota, RunningJob, Tenant
from mosu.core.reasons import PendingReason
from mosu.engine.cycle import eta, schedule
from mosu.engine.decisions import Pending
from mosu.engine.estimates import (
    EtaBasis,
    HistoryEstimator,
    StartEstimates,
    WaitSpread,
    size_class,
)
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node

GRACE_S = 30.0
ONE_NODE = [node("n0", 8, gpu_type="A100")]


def tenant(name: str, guaranteed: int, limit: int | None = None) -> Tenant:
    quota = Quota(
        guaranteed_milli=guaranteed * GPU_MILLI,
        limit_milli=None if limit is None else limit * GPU_MILLI,
    )
    return Tenant(name=name, quotas=(("A100", quota),))


# The walkthrough's two companies: acme guaranteed 4, beta guaranteed 4 and may borrow to 8.
WALKTHROUGH = [tenant("acme", 4), tenant("beta", 4, limit=8)]


@dataclass
class Case:
    name: str
    profile: str
    tenants: list[Tenant]
    running: list[tuple[Job, float]]
    """(job, started at), placed in order with best fit."""
    pending: list[Job]
    now: float
    want: dict[str, tuple[PendingReason, float | None, float | None]]
    """Job id -> (reason, likely start, late bound); None: unknown."""
    history: list[tuple[str, JobKind, int, float]] = field(default_factory=list)
    """Finished jobs the runtime history learnt from: (tenant, kind, GPUs, run time)."""
    min_runtime_s: float | None = 20.0
    nodes: list[Node] = field(default_factory=lambda: list(ONE_NODE))


def _running(nodes: list[Node], running: list[tuple[Job, float]]) -> tuple[RunningJob, ...]:
    state = ClusterState(nodes)
    out = []
    for j, started in running:
        placement = place_job(state, j, BestFit())
        assert placement is not None, f"fixture job {j.id} does not fit"
        state.assign(j.id, placement)
        out.append(RunningJob(job=j, placement=placement, started_s=started))
    return tuple(out)


def pending_of(case: Case, spread: WaitSpread | None = None) -> dict[str, Pending]:
    profile = build_profile(case.profile)
    if case.min_runtime_s is not None:
        profile = replace(profile, min_runtime_s=case.min_runtime_s)
    runtimes = HistoryEstimator()
    for who, kind, gpus, run_s in case.history:
        runtimes.observe(who, gpus * GPU_MILLI, run_s, kind)
    estimates = StartEstimates(runtimes=runtimes, stop_grace_s=GRACE_S)
    if spread is not None:
        estimates.spread = spread
    snap = ClusterSnapshot(
        now=case.now,
        nodes=tuple(case.nodes),
        tenants=tuple(case.tenants),
        running=_running(case.nodes, case.running),
        pending=tuple(case.pending),
        estimates=estimates,
    )
    result = schedule(snap, profile)
    assert not result.starts and not result.preemptions, "estimate cases leave jobs pending"
    return {p.job_id: p for p in result.pending}


def eval_job(t: float) -> Job:
    return replace(job("2", 4, tenant="acme", t=t), kind=JobKind.EVAL)


CASES = [
    Case(
        # acme's eval waits for its guarantee; beta's job borrowing it has run 4 s of
        # the 20 s minimum: reclaim takes it at 20 s, and it stops within the grace.
        # (Before: "60m from now", from an hour assumed for beta's job; it started at 20 s.)
        "within its guarantee: starts when the borrower passes its minimum runtime",
        "mosu",
        WALKTHROUGH,
        running=[(job("1", 8, tenant="beta"), 0.0)],
        pending=[eval_job(4.0)],
        now=4.0,
        want={"2": (PendingReason.WAITING_FOR_GUARANTEE, 20.0, 20.0 + GRACE_S)},
    ),
    Case(
        "reclaim waits no longer than the borrower's estimated end",
        "mosu",
        WALKTHROUGH,
        running=[(job("1", 8, tenant="beta", estimate=10.0), 0.0)],
        pending=[eval_job(4.0)],
        now=4.0,
        want={"2": (PendingReason.WAITING_FOR_GUARANTEE, 10.0, 10.0 + GRACE_S)},
    ),
    Case(
        # beta's preempted job waits for acme's eval, which has no estimate and of whose
        # kind and size nothing has finished. (Before: an hour, invented.)
        "a borrower behind a job of unknown runtime: unknown",
        "mosu",
        WALKTHROUGH,
        running=[(eval_job(4.0), 21.0)],
        pending=[job("1", 8, tenant="beta", t=0.0)],
        now=22.0,
        want={"1": (PendingReason.RESERVED, None, None)},
    ),
    Case(
        # Another tenant's 4-GPU evals ran 60 s: the cluster's history for the kind and
        # size. The late bound is the spread's default (3x the wait, plus 60 s x 2).
        "a borrower behind a job of unknown runtime: the cluster's history of its kind",
        "mosu",
        WALKTHROUGH,
        running=[(eval_job(4.0), 21.0)],
        pending=[job("1", 8, tenant="beta", t=0.0)],
        now=22.0,
        history=[("gamma", JobKind.EVAL, 4, 50.0), ("gamma", JobKind.EVAL, 4, 70.0)],
        want={"1": (PendingReason.RESERVED, 81.0, 22.0 + (59.0 + 60.0) * 3 - 60.0)},
    ),
    Case(
        "a borrower waits for running jobs' estimated ends, earliest first",
        "mosu",
        [tenant("a", 0), tenant("b", 0)],
        running=[
            (job("b1", 4, tenant="b", estimate=1_000.0), 0.0),
            (job("b2", 4, tenant="b", estimate=500.0), 0.0),
        ],
        pending=[job("a1", 4, tenant="a", t=100.0)],
        now=100.0,
        want={"a1": (PendingReason.RESERVED, 500.0, 100.0 + 460.0 * 3 - 60.0)},
    ),
    Case(
        # a1 needs a whole node: it holds n0 from a0's end at 10 500. a3 would fit on n0
        # now but would delay a1, and then waits for a1's end at 11 500.
        "a job behind a reservation waits for the reserved job to start and end",
        "fifo-backfill",
        [tenant("a", 32)],
        nodes=[node("n0", 8), node("n1", 8)],
        running=[
            (job("a0", 6, tenant="a", estimate=1_000.0), 9_500.0),
            (job("a9", 6, tenant="a", estimate=50_000.0), 9_500.0),
            (job("a4", 2, tenant="a", estimate=100_000.0), 9_500.0),
        ],
        pending=[
            job("a1", 8, tenant="a", t=1, estimate=1_000.0),
            job("a3", 2, tenant="a", t=3, estimate=100_000.0),
        ],
        now=10_000.0,
        min_runtime_s=None,
        want={
            "a1": (PendingReason.RESERVED, 10_500.0, 10_000.0 + 560.0 * 3 - 60.0),
            "a3": (PendingReason.BLOCKED_BY_RESERVATION, 11_500.0, 10_000.0 + 1_560 * 3 - 60),
        },
    ),
    Case(
        "a job its tenant's cap can never hold has no start",
        "fifo-backfill",
        [tenant("a", 4)],
        running=[],
        pending=[job("a1", 8, tenant="a")],
        now=0.0,
        min_runtime_s=None,
        want={"a1": (PendingReason.QUOTA_EXCEEDED, None, None)},
    ),
    Case(
        # One pool, one shadow: each job starts after the ones ahead of it, which end
        # after their own run times; p3's run time is unknown, so is every start after it.
        "jobs of one pool start in turn; behind an unknown run time, unknown",
        "drf",
        [tenant("a", 0), tenant("b", 0)],
        running=[(job("r0", 8, tenant="a", estimate=100.0), 0.0)],
        pending=[
            job("p1", 8, tenant="a", t=1, estimate=50.0),
            job("p2", 8, tenant="b", t=2, estimate=30.0),
            job("p3", 8, tenant="a", t=3),
            job("p4", 8, tenant="b", t=4, estimate=10.0),
        ],
        now=10.0,
        min_runtime_s=None,
        want={
            "p1": (PendingReason.NO_FIT, 100.0, 10.0 + 150.0 * 3 - 60.0),
            "p2": (PendingReason.NO_FIT, 150.0, 10.0 + 200.0 * 3 - 60.0),
            "p3": (PendingReason.NO_FIT, 180.0, 10.0 + 230.0 * 3 - 60.0),
            "p4": (PendingReason.NO_FIT, None, None),
        },
    ),
    Case(
        # Under borrowing each tenant's jobs wait in a shadow that follows its own cap:
        # b1 is at b's limit until b0 ends at 1 000, though c0 frees room at 500. a1's
        # shadow follows a's cap only, so there b1 takes c0's room at 500 and a1 waits
        # for b1's end.
        "under borrowing a job waits for its own tenant's cap",
        "kueue",
        [tenant("a", 0, limit=8), tenant("b", 0, limit=4), tenant("c", 0, limit=8)],
        running=[
            (job("b0", 4, tenant="b", estimate=1_000.0), 0.0),
            (job("c0", 4, tenant="c", estimate=500.0), 0.0),
        ],
        pending=[
            job("b1", 4, tenant="b", t=1, estimate=100.0),
            job("a1", 4, tenant="a", t=2, estimate=100.0),
        ],
        now=10.0,
        want={
            "b1": (PendingReason.QUOTA_EXCEEDED, 1_000.0, 10.0 + 1_050.0 * 3 - 60.0),
            "a1": (PendingReason.NO_FIT, 600.0, 10.0 + 650.0 * 3 - 60.0),
        },
    ),
    Case(
        # The same, a and c without a limit: their caps never bind, so they wait in the
        # pool's shadow, b1 at 500, a1 at its end at 600, c1 at a1's end at 700.
        "under borrowing a tenant without a limit waits in the pool's shadow",
        "kueue",
        [tenant("a", 0), tenant("b", 0, limit=4), tenant("c", 0)],
        running=[
            (job("b0", 4, tenant="b", estimate=1_000.0), 0.0),
            (job("c0", 4, tenant="c", estimate=500.0), 0.0),
        ],
        pending=[
            job("b1", 4, tenant="b", t=1, estimate=100.0),
            job("a1", 4, tenant="a", t=2, estimate=100.0),
            job("c1", 4, tenant="c", t=3, estimate=100.0),
        ],
        now=10.0,
        want={
            "b1": (PendingReason.QUOTA_EXCEEDED, 1_000.0, 10.0 + 1_050.0 * 3 - 60.0),
            "a1": (PendingReason.NO_FIT, 600.0, 10.0 + 650.0 * 3 - 60.0),
            "c1": (PendingReason.NO_FIT, 700.0, 10.0 + 750.0 * 3 - 60.0),
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_start_estimate(case: Case) -> None:
    got = pending_of(case)
    for job_id, (reason, likely, late) in case.want.items():
        p = got[job_id]
        assert p.reason == reason
        assert p.estimated_start_s == (None if likely is None else pytest.approx(likely))
        assert p.late_start_s == (None if late is None else pytest.approx(late))


def test_behind_more_than_the_shadow_bound_a_start_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = next(c for c in CASES if c.profile == "drf")
    monkeypatch.setattr(eta, "MAX_SHADOW_AHEAD", 1)
    got = pending_of(case)
    assert [got[k].estimated_start_s for k in ("p1", "p2", "p3")] == [100.0, 150.0, None]


def test_the_spread_learnt_from_earlier_plans_sets_the_late_bound() -> None:
    case = CASES[4]  # a borrower planned to start 400 s from now
    spread = WaitSpread()
    # Earlier 4-GPU jobs planned to wait 400 s waited between 200 s and 1 100 s.
    for real in (200.0, 300.0, 400.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1_100.0):
        spread.observe(EtaBasis.RELEASES, PendingReason.RESERVED, 4 * GPU_MILLI, 400.0, real)
    p = pending_of(case, spread)["a1"]
    ratios = sorted((r + 60.0) / 460.0 for r in (200, 300, 400, 400, 500, 600, 700, 800, 900, 1100))
    late = ratios[8] + (ratios[9] - ratios[8]) * 0.73  # their 97th percentile
    assert p.planned_start_s == pytest.approx(500.0)
    assert p.estimated_start_s == pytest.approx(500.0)  # the plan itself is the likely start
    assert p.late_start_s == pytest.approx(100.0 + 460.0 * late - 60.0)
    assert p.basis == EtaBasis.RELEASES


def test_estimates_change_no_decision() -> None:
    """The same cycle with and without what estimates read decides the same."""
    case = CASES[3]
    profile = build_profile("mosu")
    nodes = tuple(case.nodes)
    running = _running(case.nodes, case.running)
    pending = (*case.pending, job("a9", 2, tenant="acme", t=30.0))
    bare = ClusterSnapshot(
        now=25.0, nodes=nodes, tenants=tuple(case.tenants), running=running, pending=pending
    )
    runtimes = HistoryEstimator()
    runtimes.observe("beta", 8 * GPU_MILLI, 5.0, JobKind.TRAIN)
    informed = replace(bare, estimates=StartEstimates(runtimes=runtimes, stop_grace_s=99.0))
    a, b = schedule(bare, profile), schedule(informed, profile)
    assert (a.starts, a.preemptions) == (b.starts, b.preemptions)
    assert [p.reason for p in a.pending] == [p.reason for p in b.pending]


@pytest.mark.parametrize(("gpus", "want"), [(0.5, 0), (1, 0), (2, 1), (3, 2), (4, 2), (8, 3)])
def test_size_class(gpus: float, want: int) -> None:
    assert size_class(round(gpus * GPU_MILLI)) == want


def test_runtime_history_never_invents() -> None:
    h = HistoryEstimator()
    h.observe("a", 4_000, 100.0, JobKind.TRAIN)
    asked = replace(job("x", 2, tenant="a"), kind=JobKind.EVAL)
    assert h.runtime(asked) is None  # another size, another kind: unknown
    assert h.estimate("a", 2_000, None) == 100.0  # what profiles plan with is unchanged
    assert h.runtime(asked, 7.0) == 7.0
    h.observe("b", 2_000, 40.0, JobKind.EVAL)
    assert h.runtime(asked) == 40.0  # the cluster's history for its kind and size


@pytest.mark.parametrize(
    ("ran", "want"),
    [
        (0.0, 300.0),  # median of 100, 200, 300, 400, 500
        (250.0, 400.0),  # of those longer than it has run: 300, 400, 500
        (450.0, 500.0),
        (600.0, 1_200.0),  # past every one: twice what it has run
    ],
)
def test_a_running_job_is_expected_to_run_as_long_as_longer_jobs_of_its_kind(
    ran: float, want: float
) -> None:
    h = HistoryEstimator()
    for run_s in (500.0, 100.0, 400.0, 200.0, 300.0):
        h.observe("a", 1_000, run_s, JobKind.TRAIN)
    assert h.runtime_after(job("x", 1, tenant="a"), ran) == want
    assert h.runtime_after(job("y", 1, tenant="a"), ran, 50.0) == max(50.0, 2 * ran)


def test_a_history_filled_estimate_is_not_taken_for_the_users() -> None:
    """Profiles with the history estimator plan with ``Job.estimate_s`` filled from any
    finished job of the tenant; a start estimate says unknown instead."""
    case = CASES[2]  # beta's job waits for acme's eval of unknown run time
    filled = replace(case.running[0][0], estimate_s=5.0)  # what the tenant's history says
    informed = replace(case, running=[(filled, 21.0)])
    assert pending_of(informed)["1"].estimated_start_s == pytest.approx(26.0)
    profile = replace(build_profile("mosu"), min_runtime_s=20.0)
    snap = ClusterSnapshot(
        now=22.0,
        nodes=tuple(ONE_NODE),
        tenants=tuple(WALKTHROUGH),
        running=_running(ONE_NODE, informed.running),
        pending=tuple(case.pending),
        estimates=StartEstimates(user_estimates={"2": None, "1": None}),
    )
    (pending,) = schedule(snap, profile).pending
    assert (pending.estimated_start_s, pending.late_start_s) == (None, None)
