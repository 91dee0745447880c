"""The dashboard's history, read from rows written at known times: GPUs held per bucket,
jobs pending at each bucket's end, quota attainment, and what a tenant may see of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mosu.service.db.rows import AllocationRow, EventRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services.auth import OPERATOR, Principal
from mosu.service.services.history import OTHERS, cluster_history
from mosu.web.history_cache import read

NOW = 1_800_000_000.0
DAY = 86400.0
Q = 900.0
"""The 24 h window's bucket: 15 minutes."""


@dataclass
class Scenario:
    name: str
    allocations: list[tuple[str, str, int, float, float | None]] = field(default_factory=list)
    """(tenant, GPU indices, share in milli, from, until or None), times relative to now."""
    jobs: list[tuple[str, str, list[tuple[float, str | None, str]]]] = field(default_factory=list)
    """(tenant, state now, [(time, from state, to state)])."""
    want_last_4: dict[str, list[float]] = field(default_factory=dict)
    """Per tenant, the last four 15-minute buckets of the 24 h window."""
    want_first: dict[str, float] = field(default_factory=dict)
    """Per tenant, the first bucket of the 24 h window."""


def alloc(tenant, indices, milli, start, end):  # type: ignore[no-untyped-def]
    return (tenant, indices, milli, start, end)


ALLOCATED = [
    Scenario(
        "a GPU held for a whole bucket counts one",
        allocations=[alloc("a", "0", 1000, -2 * Q, -Q)],
        want_last_4={"a": [0, 0, 1, 0]},
    ),
    Scenario(
        "a GPU held for half a bucket counts a half",
        allocations=[alloc("a", "0", 1000, -2 * Q, -1.5 * Q)],
        want_last_4={"a": [0, 0, 0.5, 0]},
    ),
    Scenario(
        "a GPU still held counts up to now",
        allocations=[alloc("a", "3", 1000, -1.5 * Q, None)],
        want_last_4={"a": [0, 0, 0.5, 1]},
    ),
    Scenario(
        "a shared GPU counts its share",
        allocations=[alloc("a", "0", 250, -4 * Q, None)],
        want_last_4={"a": [0.25, 0.25, 0.25, 0.25]},
    ),
    Scenario(
        "a replica counts every device it holds",
        allocations=[alloc("a", "0,1,2,3", 1000, -4 * Q, -3 * Q)],
        want_last_4={"a": [4, 0, 0, 0]},
    ),
    Scenario(
        "tenants are summed apart",
        allocations=[
            alloc("a", "0,1", 1000, -4 * Q, None),
            alloc("b", "2", 1000, -2 * Q, None),
            alloc("b", "3", 500, -2 * Q, -Q),
        ],
        want_last_4={"a": [2, 2, 2, 2], "b": [0, 0, 1.5, 1]},
    ),
    Scenario(
        "what began before the window counts from the window's start",
        allocations=[alloc("a", "0", 1000, -DAY - 5 * Q, -DAY + Q / 4)],
        want_first={"a": 0.25},
    ),
    Scenario(
        "what ended before the window is not counted",
        allocations=[alloc("a", "0", 1000, -3 * DAY, -2 * DAY)],
        want_last_4={"a": [0, 0, 0, 0]},
        want_first={"a": 0},
    ),
]

PENDING = [
    Scenario(
        "a job waits from its submission to its start",
        jobs=[("a", "running", [(-2000, None, "pending"), (-1000, "pending", "starting")])],
        want_last_4={"a": [0, 1, 0, 0]},
    ),
    Scenario(
        "a job still waiting counts to the end",
        jobs=[("a", "pending", [(-500, None, "pending")])],
        want_last_4={"a": [0, 0, 0, 1]},
    ),
    Scenario(
        "a job waiting since before the window counts from its start",
        jobs=[("a", "pending", [(-2 * DAY, None, "pending")])],
        want_last_4={"a": [1, 1, 1, 1]},
        want_first={"a": 1},
    ),
    Scenario(
        "a preempted job waits again until it restarts",
        jobs=[
            (
                "a",
                "running",
                [
                    (-5000, None, "pending"),
                    (-4000, "pending", "starting"),
                    (-2000, "running", "preempted"),
                    (-2000, "preempted", "pending"),
                    (-1000, "pending", "starting"),
                ],
            )
        ],
        want_last_4={"a": [0, 1, 0, 0]},
    ),
    Scenario(
        "a cancelled job stops waiting",
        jobs=[
            ("a", "cancelled", [(-3000, None, "pending"), (-1000, "pending", "cancelled")]),
            ("b", "pending", [(-3000, None, "pending")]),
        ],
        want_last_4={"a": [1, 1, 0, 0], "b": [1, 1, 1, 1]},
    ),
]


def write(platform, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    with platform.tx() as s:
        s.add(NodeRow(name="n0", gpu_type="H800", gpus=8, created_at=0.0))
        for tenant in ("a", "b"):
            s.add(TenantRow(name=tenant, weight=1.0, created_at=0.0))
        s.flush()
        for tenant in ("a", "b"):
            s.add(QuotaRow(tenant=tenant, gpu_type="H800", guaranteed_milli=4000))
        s.flush()
        job_id = 0

        def job(tenant: str, state: str, submitted: float) -> int:
            nonlocal job_id
            job_id += 1
            s.add(
                JobRow(
                    id=job_id,
                    tenant=tenant,
                    name=f"j{job_id}",
                    kind="train",
                    state=state,
                    gpus=1,
                    gpu_milli=1000,
                    spec={},
                    submitted_at=NOW + submitted,
                )
            )
            s.flush()
            return job_id

        for tenant, indices, milli, start, end in scenario.allocations:
            owner = job(tenant, "running" if end is None else "succeeded", start)
            s.add(
                AllocationRow(
                    job_id=owner,
                    attempt=1,
                    replica=0,
                    tenant=tenant,
                    node="n0",
                    gpu_type="H800",
                    gpu_indices=indices,
                    gpu_milli=milli,
                    allocated_at=NOW + start,
                    released_at=None if end is None else NOW + end,
                )
            )
        for tenant, state, events in scenario.jobs:
            owner = job(tenant, state, events[0][0])
            for at, before, after in events:
                s.add(
                    EventRow(
                        at=NOW + at,
                        job_id=owner,
                        tenant=tenant,
                        kind="state",
                        from_state=before,
                        to_state=after,
                    )
                )


def check(matrix_by_tenant: dict[str, list[float]], scenario: Scenario) -> None:
    for tenant, want in scenario.want_last_4.items():
        got = [round(v, 6) for v in matrix_by_tenant[tenant][-4:]]
        assert got == pytest.approx(want), tenant
    for tenant, want in scenario.want_first.items():
        assert matrix_by_tenant[tenant][0] == pytest.approx(want, abs=1e-6), tenant


@pytest.mark.parametrize("scenario", ALLOCATED, ids=lambda s: s.name)
def test_gpus_held_per_bucket(platform, scenario: Scenario):
    write(platform, scenario)
    with platform.sessions() as s:
        view = cluster_history(s, now=NOW).view(OPERATOR)
    check(view.allocated["24h"], scenario)
    # The week's hourly buckets hold the same GPU-seconds as the day's quarter hours.
    for tenant, day in view.allocated["24h"].items():
        week = view.allocated["7d"][tenant]
        assert sum(week[-24:]) * 3600 == pytest.approx(sum(day) * Q, abs=5)


@pytest.mark.parametrize("scenario", PENDING, ids=lambda s: s.name)
def test_jobs_pending_at_each_buckets_end(platform, scenario: Scenario):
    write(platform, scenario)
    with platform.sessions() as s:
        view = cluster_history(s, now=NOW).view(OPERATOR)
    check(view.pending["24h"], scenario)


def test_a_tenant_sees_itself_and_the_rest_only_summed(platform):
    scenario = ALLOCATED[5]  # tenants are summed apart
    write(platform, scenario)
    with platform.sessions() as s:
        history = cluster_history(s, now=NOW)
    view = history.view(Principal(tenant="b"))
    assert set(view.allocated["24h"]) == {"b", OTHERS}
    assert view.allocated["24h"]["b"][-4:] == [0, 0, 1.5, 1]
    assert view.allocated["24h"][OTHERS][-4:] == [2, 2, 2, 2]
    assert view.guarantees == {"b": 4.0}
    assert view.guarantee_total == 8.0
    assert set(history.view(OPERATOR).allocated["24h"]) == {"a", "b"}


def test_quota_attainment_is_the_simulators_metric_over_the_week(platform):
    """a waits for its guarantee for half the week and holds it the other half (0.5); b
    holds more than its guarantee for the whole week while wanting it (1.0)."""
    half = 3.5 * DAY
    scenario = Scenario(
        "attainment",
        allocations=[alloc("b", "4,5,6,7,0,1", 1000, -8 * DAY, None)],
        jobs=[("a", "running", [(-8 * DAY, None, "pending"), (-half, "pending", "starting")])],
    )
    write(platform, scenario)
    with platform.tx() as s:
        s.get(JobRow, 2).gpus = 4
        s.add(
            AllocationRow(
                job_id=2,
                attempt=1,
                replica=0,
                tenant="a",
                node="n0",
                gpu_type="H800",
                gpu_indices="0,1,2,3",
                gpu_milli=1000,
                allocated_at=NOW - half,
            )
        )
    reading = read(platform.sessions, NOW)
    assert reading.attainment["a"] == pytest.approx(0.5, abs=1e-6)
    assert reading.attainment["b"] == pytest.approx(1.0)
