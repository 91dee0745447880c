"""The what-if metrics, hand-computed: borrowing beyond guarantees, the per-tenant report
and the replay's wait error against real waits."""

from __future__ import annotations

import pytest

from mosu.sim import metrics
from tests.sim.test_metrics import log, outcome, sample


def test_borrowed_is_allocation_beyond_the_guarantee_over_time():
    # a: guarantee 2 GPUs; holds 3 for 100 s then 1 for 100 s -> borrowed 1 GPU x 100 s.
    # b: no guarantee; holds 2 GPUs for 50 s -> all of it borrowed, 100 GPU-s.
    run = log(
        usage=[
            sample(0, "a", 3000, 3000),
            sample(100, "a", 1000, 1000),
            sample(0, "b", 2000, 2000),
            sample(50, "b", 0, 0),
        ],
        end=200.0,
        guarantees={("a", "A100"): 2000},
    )
    assert metrics.borrowed_gpu_s(run) == {"a": 100.0, "b": 100.0}
    report = metrics.tenant_report(run)
    assert report["tenants"]["a"]["borrowed_gpu_h"] == 100.0 / 3600
    assert report["overall"]["borrowed_gpu_h"] == 200.0 / 3600


def test_tenant_report_waits_and_jct():
    run = log(
        outcomes=[
            outcome("1", 0, 10, 110, 100, tenant="a"),
            outcome("2", 0, 30, 130, 100, tenant="a", preemptions=1, lost=3600.0),
            outcome("3", 5, None, None, 100, tenant="b"),
        ],
        end=200.0,
    )
    report = metrics.tenant_report(run)
    a = report["tenants"]["a"]
    assert (a["jobs"], a["avg_wait_s"], a["avg_jct_s"]) == (2, 20.0, 120.0)
    assert a["p95_wait_s"] == 29.0
    assert (a["preemptions"], a["lost_gpu_h"]) == (1, 1.0)
    assert report["tenants"]["b"]["avg_wait_s"] is None
    assert report["overall"]["jobs"] == 3


def test_wait_error_over_jobs_started_in_both():
    run = log(
        outcomes=[
            outcome("1", 0, 10, 20, 10),
            outcome("2", 0, 0, 10, 10),
            outcome("3", 0, 40, 50, 10),
            outcome("4", 0, None, None, 10),
        ],
        end=60.0,
    )
    real = {"1": 4.0, "2": 0.0, "3": 10.0, "4": 3.0, "gone": 1.0}
    err = metrics.wait_error(run, real)
    # errors 6, 0, 30 (job 4 never started in the replay; "gone" is not in it)
    assert err["jobs"] == 3
    assert err["median_error_s"] == 6.0
    assert err["p90_error_s"] == pytest.approx(25.2)  # 6 + 0.8 x (30 - 6)
    assert (err["median_real_wait_s"], err["median_replayed_wait_s"]) == (4.0, 10.0)
