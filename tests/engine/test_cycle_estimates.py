"""Runtime estimates come only from the user or from finished jobs fed in."""

from __future__ import annotations

import dataclasses
import random

import pytest

from mosu.core.models import GPU_MILLI, Job, Node, Quota, RunningJob, Shape, Tenant
from mosu.engine.cycle import schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.estimates import HistoryEstimator, StartEstimates
from mosu.engine.ordering import LeastAttainedService
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState

NOW = 100_000.0


@pytest.mark.parametrize(
    ("name", "finished", "ask", "user", "want"),
    [
        ("the user's estimate wins over history", [("a", 1000, 50.0)], ("a", 1000), 7.0, 7.0),
        ("no history and no user estimate gives none", [], ("a", 1000), None, None),
        (
            "the median of the same tenant and size",
            [("a", 1000, 10.0), ("a", 1000, 30.0), ("a", 1000, 20.0), ("a", 8000, 999.0)],
            ("a", 1000),
            None,
            20.0,
        ),
        (
            "an unseen size falls back to the tenant",
            [("a", 1000, 10.0), ("a", 2000, 30.0), ("b", 4000, 1e6)],
            ("a", 4000),
            None,
            20.0,
        ),
        (
            "an unseen tenant falls back to everyone",
            [("a", 1000, 10.0), ("b", 1000, 30.0), ("c", 1000, 50.0)],
            ("z", 1000),
            None,
            30.0,
        ),
    ],
)
def test_history_estimate(
    name: str,
    finished: list[tuple[str, int, float]],
    ask: tuple[str, int],
    user: float | None,
    want: float | None,
) -> None:
    est = HistoryEstimator()
    for tenant, milli, run_s in finished:
        est.observe(tenant, milli, run_s)
    assert est.estimate(ask[0], ask[1], user) == want


def test_history_forgets_beyond_its_window() -> None:
    est = HistoryEstimator(window=2)
    for run_s in (1_000.0, 10.0, 20.0):
        est.observe("a", 1000, run_s)
    assert est.estimate("a", 1000, None) == 15.0


@pytest.mark.parametrize(
    ("service", "want_queue"), [(0.0, 0), (3_599.0, 0), (3_600.0, 1), (40_000.0, 2)]
)
def test_las_queue_is_set_by_gpu_seconds_of_service(service: float, want_queue: int) -> None:
    assert LeastAttainedService().queue_of(service) == want_queue


def _jobs_and_sizes(seed: int) -> tuple[ClusterSnapshot, dict[tuple[str, int], float | None]]:
    """A busy cluster whose jobs mostly lack their own estimate, and history's estimate
    per tenant and size (None for a size history has not seen)."""
    rng = random.Random(seed)
    nodes = tuple(Node(f"n{i}", "A100", 8, 64_000, 512_000, rack=f"r{i // 4}") for i in range(8))
    tenants = tuple(
        Tenant(name, (("A100", Quota(gpus * GPU_MILLI, None)),))
        for name, gpus in (("a", 32), ("b", 16), ("c", 16))
    )
    sizes: dict[tuple[str, int], float | None] = {}

    def job(k: int, prefix: str) -> Job:
        tenant = rng.choice("abc")
        gpus, replicas = rng.choice([(1, 1), (2, 1), (4, 1), (8, 1), (8, 2)])
        milli = gpus * GPU_MILLI * replicas
        if (tenant, milli) not in sizes:
            sizes[(tenant, milli)] = rng.choice([None, 300.0, 3_600.0, 20_000.0])
        return Job(
            f"{prefix}{k}",
            tenant,
            Shape(gpus),
            replicas=replicas,
            submit_s=NOW - 10_000 + k,
            estimate_s=rng.choice([None, None, 900.0]),
            checkpoint_every_s=rng.choice([None, 600.0]),
        )

    state = ClusterState(nodes)
    running = []
    for k in range(40):
        candidate = job(k, "r")
        placement = place_job(state, candidate, BestFit())
        if placement is not None:
            state.assign(candidate.id, placement)
            running.append(RunningJob(candidate, placement, started_s=NOW - rng.uniform(0, 5_000)))
    pending = tuple(job(k, "p") for k in range(40))
    snapshot = ClusterSnapshot(now=NOW, nodes=nodes, tenants=tenants, running=tuple(running))
    return dataclasses.replace(snapshot, pending=pending), sizes


def _decisions(result: CycleResult) -> tuple[object, ...]:
    return (result.starts, result.preemptions, result.pending, result.reservations)


@pytest.mark.parametrize("profile", ["mosu", "kueue", "las", "fifo-backfill"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_history_estimates_by_size_decide_as_the_same_estimates_on_each_job(
    profile: str, seed: int
) -> None:
    by_size, sizes = _jobs_and_sizes(seed)
    by_size = dataclasses.replace(by_size, history_estimates=sizes, estimates=StartEstimates())
    own = {j.id: j.estimate_s for j in (*by_size.pending, *(r.job for r in by_size.running))}

    def filled(job: Job) -> Job:
        if job.estimate_s is not None:
            return job
        return dataclasses.replace(job, estimate_s=sizes[(job.tenant, job.total_gpu_milli)])

    on_jobs = dataclasses.replace(
        by_size,
        history_estimates={},
        # Start estimates read the users' own, as they did when jobs carried history's.
        estimates=StartEstimates(user_estimates=own),
        pending=tuple(filled(j) for j in by_size.pending),
        running=tuple(dataclasses.replace(r, job=filled(r.job)) for r in by_size.running),
    )
    assert any(
        j.estimate_s != k.estimate_s for j, k in zip(on_jobs.pending, by_size.pending, strict=True)
    )
    got = schedule(by_size, build_profile(profile))
    want = schedule(on_jobs, build_profile(profile))
    assert _decisions(got) == _decisions(want)
    assert got.starts or got.preemptions or got.reservations  # estimates were read


@pytest.mark.parametrize(
    ("name", "own", "sizes", "want"),
    [
        ("its own estimate wins", 60.0, {("a", 1000): 300.0}, 60.0),
        ("history's for its tenant and size", None, {("a", 1000): 300.0}, 300.0),
        ("none for a size history has not seen", None, {("a", 2000): 300.0}, None),
        ("none without history", None, {}, None),
    ],
)
def test_estimate_of(
    name: str, own: float | None, sizes: dict[tuple[str, int], float], want: float | None
) -> None:
    snapshot = ClusterSnapshot(now=NOW, nodes=(), history_estimates=sizes)
    assert snapshot.estimate_of(Job("j", "a", Shape(1), estimate_s=own)) == want
