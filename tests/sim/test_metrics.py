"""Metrics: hand-computed tables plus invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.sim import metrics
from mosu.sim.records import JobOutcome, SimLog, UsageSample


def outcome(
    job_id: str,
    submit: float,
    start: float | None,
    finish: float | None,
    duration: float,
    *,
    tenant: str = "a",
    gpus: int = 1,
    preemptions: int = 0,
    lost: float = 0.0,
    reclaim: float | None = None,
) -> JobOutcome:
    return JobOutcome(
        job_id=job_id,
        tenant=tenant,
        gpu_type="A100",
        gpu_milli=gpus * 1000,
        submit_s=submit,
        first_start_s=start,
        finish_s=finish,
        duration_s=duration,
        preemptions=preemptions,
        lost_gpu_s=lost,
        reclaim_wait_s=reclaim,
    )


def sample(t: float, tenant: str, alloc: int, demand: int, gpu_type: str = "A100") -> UsageSample:
    return UsageSample(t, tenant, gpu_type, alloc, demand)


def log(
    outcomes=(),
    usage=(),
    *,
    capacity=10_000,
    start=0.0,
    end=100.0,
    guarantees=None,
    weights=None,
) -> SimLog:
    return SimLog(
        outcomes=tuple(outcomes),
        usage=tuple(usage),
        capacity_milli=capacity,
        start_s=start,
        end_s=end,
        guarantees=guarantees or {},
        weights=weights or {},
    )


# --- per-job metrics -------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "want_jct", "want_queue", "want_slowdown"),
    [
        pytest.param(outcome("j", 0, 10, 110, 100), 110, 10, 1.1, id="a long job"),
        pytest.param(outcome("j", 0, 0, 5, 5), 5, 0, 0.5, id="a short job is bounded by 10 s"),
        pytest.param(outcome("j", 20, 50, None, 1000), None, 30, None, id="an unfinished job"),
        pytest.param(outcome("j", 30, None, None, 10), None, None, None, id="an unstarted job"),
    ],
)
def test_per_job_metrics(job, want_jct, want_queue, want_slowdown):
    assert metrics.jct_s(job) == want_jct
    assert metrics.queueing_delay_s(job) == want_queue
    assert metrics.bounded_slowdown(job) == pytest.approx(want_slowdown)


def test_summary_of_job_outcomes():
    jobs = [
        outcome("j1", 0, 10, 110, 100, gpus=16, preemptions=2, lost=30.0, reclaim=5.0),
        outcome("j2", 0, 0, 5, 5, tenant="b", reclaim=15.0),
        outcome("j3", 20, 50, None, 1000, gpus=32),
        outcome("j4", 30, None, None, 10),
    ]
    got = metrics.summarize(log(jobs, end=200.0))
    assert got["jobs"] == 4
    assert got["unfinished"] == 2
    assert got["unstarted"] == 1
    assert got["avg_jct_s"] == pytest.approx(57.5)
    assert got["p50_jct_s"] == pytest.approx(57.5)
    assert got["p99_jct_s"] == pytest.approx(5 + 0.99 * 105)
    assert got["avg_queue_s"] == pytest.approx(40 / 3)
    assert got["p99_queue_s"] == pytest.approx(10 + 0.98 * 20)  # rank 0.99 * 2 in [0, 10, 30]
    assert got["large_gang_p99_queue_s"] == pytest.approx(10 + 0.99 * 20)
    assert got["avg_bounded_slowdown"] == pytest.approx(0.8)
    assert got["makespan_s"] == 200.0  # some job never finished: up to the end of the log
    assert got["reclaim_p99_s"] == pytest.approx(5 + 0.99 * 10)
    assert got["preemptions"] == 2
    assert got["lost_gpu_s"] == 30.0
    assert got["tenants"]["a"] == {
        "avg_jct_s": 110.0,
        "avg_queue_s": 20.0,
        "quota_attainment": None,
        "jobs": 3,
    }
    assert got["tenants"]["b"]["jobs"] == 1


def test_makespan_runs_to_the_last_finish_when_all_finished():
    jobs = [outcome("j1", 5, 10, 110, 100), outcome("j2", 7, 7, 50, 43)]
    assert metrics.makespan_s(log(jobs, end=500.0)) == 105.0


def test_an_empty_log_has_no_statistics():
    got = metrics.summarize(log())
    assert got["jobs"] == 0
    assert got["avg_jct_s"] is None
    assert got["p99_queue_s"] is None
    assert got["reclaim_p99_s"] is None
    assert got["quota_attainment"] is None
    assert got["jain_fairness"] is None
    assert got["utilization"] == 0.0


# --- usage-series metrics --------------------------------------------------

# Tenant a wants its 4-GPU guarantee throughout and holds 2 GPUs, then 4 from t=50:
# attainment (2*50 + 4*50) / (4*100) = 0.75. Tenant b wants 8 with a guarantee of 4 and
# always holds at least 4: attainment 1. Both are backlogged only during [0, 50), holding
# 2 and 6 GPUs: Jain = 8² / (2 * (2² + 6²)) = 0.8.
TWO_TENANTS = [
    sample(0, "a", 2000, 4000),
    sample(0, "b", 6000, 8000),
    sample(50, "a", 4000, 4000),
    sample(50, "b", 4000, 8000),
]
GUARANTEES = {("a", "A100"): 4000, ("b", "A100"): 4000}


def test_two_tenant_attainment_fairness_and_utilization():
    got = metrics.summarize(log(usage=TWO_TENANTS, guarantees=GUARANTEES))
    assert got["tenants"]["a"]["quota_attainment"] == pytest.approx(0.75)
    assert got["tenants"]["b"]["quota_attainment"] == pytest.approx(1.0)
    assert got["quota_attainment"] == pytest.approx(0.75)
    assert got["jain_fairness"] == pytest.approx(0.8)
    assert got["utilization"] == pytest.approx(0.8)  # 8 of 10 GPUs throughout
    assert metrics.quota_attainment(log(usage=TWO_TENANTS, guarantees=GUARANTEES)) == {
        "a": pytest.approx(0.75),
        "b": pytest.approx(1.0),
    }


def test_fairness_divides_allocation_by_weight():
    # b has three times a's weight, so 2 vs 6 GPUs is a perfectly fair split.
    got = metrics.fairness(log(usage=TWO_TENANTS, weights={"a": 1.0, "b": 3.0}))
    assert got == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("usage", "guarantees", "want"),
    [
        pytest.param(
            [sample(0, "a", 0, 0), sample(40, "a", 1000, 2000)],
            {("a", "A100"): 4000},
            {"a": 0.5},
            id="time without demand does not count",
        ),
        pytest.param(
            [sample(0, "a", 6000, 6000)],
            {("a", "A100"): 4000},
            {"a": 1.0},
            id="borrowing above the guarantee caps at one",
        ),
        pytest.param(
            [sample(0, "a", 0, 3000)],
            {},
            {"a": None},
            id="a tenant without a guarantee has no attainment",
        ),
        pytest.param(
            [sample(0, "a", 1000, 2000, "A100"), sample(0, "a", 1000, 2000, "H100")],
            {("a", "*"): 4000},
            {"a": 0.5},
            id="an any-type guarantee covers the sum over GPU types",
        ),
        pytest.param(
            [sample(0, "a", 1000, 2000, "A100"), sample(0, "a", 0, 2000, "H100")],
            {("a", "A100"): 2000, ("a", "H100"): 2000},
            {"a": 0.25},
            id="per-type guarantees are summed over types",
        ),
        pytest.param(
            [sample(-50, "a", 0, 4000), sample(50, "a", 4000, 4000), sample(150, "a", 0, 4000)],
            {("a", "A100"): 4000},
            {"a": 0.5},
            id="samples outside the span are clipped to it",
        ),
    ],
)
def test_quota_attainment_cases(usage, guarantees, want):
    got = metrics.quota_attainment(log(usage=usage, guarantees=guarantees))
    assert got == {k: (None if v is None else pytest.approx(v)) for k, v in want.items()}


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        pytest.param(
            [sample(0, "a", 1000, 2000), sample(0, "b", 1000, 5000), sample(0, "c", 4000, 4000)],
            1.0,
            id="only backlogged tenants count",
        ),
        pytest.param(
            [sample(0, "a", 0, 2000), sample(0, "b", 0, 5000)],
            1.0,
            id="tenants all holding nothing are treated alike",
        ),
        pytest.param(
            [sample(0, "a", 1000, 2000), sample(0, "b", 0, 5000)],
            0.5,
            id="one of two holds everything",
        ),
        pytest.param(
            [sample(0, "a", 1000, 2000), sample(0, "b", 0, 5000), sample(75, "b", 1000, 5000)],
            (0.5 * 75 + 1.0 * 25) / 100,
            id="the index is weighted by time",
        ),
        pytest.param([sample(0, "a", 1000, 2000)], None, id="one backlogged tenant is no contest"),
    ],
)
def test_fairness_cases(usage, want):
    got = metrics.fairness(log(usage=usage))
    assert got == (None if want is None else pytest.approx(want))


def test_utilization_integrates_allocation_over_the_span():
    usage = [sample(0, "a", 5000, 5000), sample(50, "a", 0, 0), sample(50, "b", 10_000, 10_000)]
    # (5 GPUs * 50 s + 10 GPUs * 50 s) / (20 GPUs * 100 s)
    assert metrics.utilization(log(usage=usage, capacity=20_000)) == pytest.approx(0.375)


def test_allocation_series_are_step_series():
    usage = [
        *TWO_TENANTS,
        sample(60, "a", 1000, 1000, "H100"),  # a second GPU type adds to a's allocation
        sample(60, "a", 0, 0, "H100"),  # the last sample at one instant wins
        sample(70, "b", 0, 0),
        sample(500, "b", 8000, 8000),  # after the end of the log
    ]
    series = metrics.allocation_series(log(usage=usage))
    assert {k: (t.tolist(), v.tolist()) for k, (t, v) in series.items()} == {
        "a": ([0.0, 50.0, 60.0], [2000.0, 4000.0, 4000.0]),
        "b": ([0.0, 50.0, 70.0], [6000.0, 4000.0, 0.0]),
    }
    times, total = metrics.total_allocation_series(log(usage=usage))
    assert times.tolist() == [0.0, 50.0, 60.0, 70.0]
    assert total.tolist() == [8000.0, 8000.0, 8000.0, 4000.0]


@pytest.mark.parametrize(
    ("values", "want"),
    [
        pytest.param([1, 1, 1, 1], 1.0, id="equal shares are perfectly fair"),
        pytest.param([1, 0, 0, 0], 0.25, id="one of four holding all gives 1/n"),
        pytest.param([2, 6], 0.8, id="two unequal shares"),
    ],
)
def test_jain_index(values, want):
    assert metrics.jain_index(values) == pytest.approx(want)


# --- invariants ------------------------------------------------------------

TENANTS = ["a", "b", "c", "d"]


@given(st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=50))
def test_jain_index_is_between_one_over_n_and_one(values):
    got = metrics.jain_index(values)
    assert 1 / len(values) <= got <= 1.0


@st.composite
def usage_logs(draw):
    capacity = draw(st.integers(min_value=1000, max_value=64_000))
    share = capacity // (len(TENANTS) * 2)  # at most 2 GPU types per tenant
    samples = []
    for _ in range(draw(st.integers(min_value=0, max_value=40))):
        alloc = draw(st.integers(min_value=0, max_value=share))
        demand = alloc + draw(st.integers(min_value=0, max_value=10_000))
        samples.append(
            UsageSample(
                time_s=draw(st.floats(min_value=-10, max_value=110, allow_nan=False)),
                tenant=draw(st.sampled_from(TENANTS)),
                gpu_type=draw(st.sampled_from(["A100", "H100"])),
                allocated_milli=alloc,
                demand_milli=demand,
            )
        )
    guarantees = {
        (t, g): draw(st.integers(min_value=0, max_value=8000))
        for t in TENANTS
        for g in draw(st.sets(st.sampled_from(["A100", "H100", "*"])))
    }
    weights = {t: draw(st.floats(min_value=0.1, max_value=10)) for t in TENANTS}
    return log(usage=samples, capacity=capacity, guarantees=guarantees, weights=weights)


@settings(max_examples=150, deadline=None)
@given(usage_logs())
def test_usage_metrics_stay_in_range(sim_log):
    got = metrics.summarize(sim_log)
    assert 0.0 <= got["utilization"] <= 1.0
    for tenant in got["tenants"].values():
        attainment = tenant["quota_attainment"]
        assert attainment is None or 0.0 <= attainment <= 1.0
    jain = got["jain_fairness"]
    assert jain is None or 1 / len(TENANTS) - 1e-9 <= jain <= 1.0


def test_start_estimates_are_judged_on_jobs_that_waited_a_minute() -> None:
    def est(job_id: str, start: float, likely: float | None, late: float | None) -> JobOutcome:
        base = outcome(job_id, 0.0, start, start + 10.0, 10.0)
        return replace(base, eta_recorded=True, eta_start_s=likely, eta_late_s=late)

    outcomes = [
        est("fair", 100.0, 80.0, 150.0),  # within x2, late bound held; error 20
        est("late", 500.0, 100.0, 400.0),  # 5x the estimate, after the late bound; error 400
        est("early", 100.0, 300.0, None),  # a third of it; no late bound: the likely start held
        est("unknown", 200.0, None, None),  # counted as a miss in both fractions
        est("quick", 30.0, 10.0, 20.0),  # waited under a minute: not judged
        outcome("never-asked", 0.0, 500.0, 510.0, 10.0),  # started at once: nothing recorded
    ]
    eta = metrics.eta_accuracy(outcomes)
    assert eta["jobs"] == 4
    assert eta["within_factor_2"] == pytest.approx(1 / 4)
    assert eta["late_bound_held"] == pytest.approx(2 / 4)
    assert eta["unknown"] == pytest.approx(1 / 4)
    assert eta["median_abs_error_s"] == pytest.approx(200.0)  # of 20, 200, 400
    assert eta["p90_abs_error_s"] == pytest.approx(360.0)
    log = SimLog(tuple(outcomes), (), 8_000, 0.0, 600.0, {}, {})
    assert metrics.summarize(log)["eta"] == eta


# --- LLM-era metrics: big gangs, lost share, idle while waiting --------------


def test_large_gang_queueing_counts_only_gangs_of_at_least_the_size():
    outcomes = [
        outcome("small", 0, 500, 600, 100, gpus=8),
        outcome("big", 0, 40, 140, 100, gpus=256),
        outcome("huge", 10, 30, 130, 100, gpus=1024),
        outcome("never", 0, None, None, 100, gpus=512),
    ]
    # Two started big gangs queued 40 s and 20 s: p99 interpolates to 39.8 s.
    assert metrics.large_gang_p99_queue_s(outcomes, 256) == pytest.approx(39.8)
    assert metrics.large_gang_p99_queue_s(outcomes, 2048) is None


def test_lost_share_divides_lost_by_allocated_gpu_time():
    # 8 GPUs held for 100 s = 800 GPU-s; 200 of them lost to preemptions.
    sim_log = log(
        [outcome("j", 0, 0, 100, 80, gpus=8, lost=200.0)],
        [sample(0, "a", 8000, 8000), sample(100, "a", 0, 0)],
    )
    assert metrics.allocated_gpu_s(sim_log) == pytest.approx(800.0)
    assert metrics.preemption_loss_share(sim_log) == pytest.approx(0.25)
    assert metrics.preemption_loss_share(log()) is None


def test_useful_utilization_leaves_out_the_lost_work():
    # 8 GPUs held for 100 s of the span's 100 s on a 16-GPU cluster: utilization 0.5;
    # 200 of the 800 GPU-seconds were lost, so 600 / 1,600 were kept.
    sim_log = log(
        [outcome("j", 0, 0, 100, 80, gpus=8, lost=200.0)],
        [sample(0, "a", 8000, 8000), sample(100, "a", 0, 0)],
        capacity=16_000,
    )
    assert metrics.utilization(sim_log) == pytest.approx(0.5)
    assert metrics.useful_utilization(sim_log) == pytest.approx(0.375)


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        # 10 GPUs; a holds 4 and wants 10 over [0, 50): 6 idle, 6 waiting -> 300 GPU-s;
        # then b holds 4 more, a still waits for 6: 2 idle -> 2 * 50 = 100.
        pytest.param(
            [sample(0, "a", 4000, 10_000), sample(50, "b", 4000, 4000)],
            400.0,
            id="idle bounded by idle GPUs",
        ),
        # a waits for 2 GPUs while 6 are idle: only 2 count.
        pytest.param([sample(0, "a", 4000, 6000)], 200.0, id="idle bounded by waiting demand"),
        pytest.param([sample(0, "a", 4000, 4000)], 0.0, id="nothing waits"),
        # Waiting ends at 30 when the demand is met.
        pytest.param([sample(0, "a", 0, 8000), sample(30, "a", 8000, 8000)], 240.0, id="wait ends"),
    ],
)
def test_idle_while_waiting(usage, want):
    assert metrics.idle_while_waiting_gpu_s(log(usage=usage)) == pytest.approx(want)


@settings(max_examples=100, deadline=None)
@given(usage_logs())
def test_idle_while_waiting_is_at_most_the_idle_gpu_time(sim_log):
    idle = sim_log.capacity_milli / 1000 * (sim_log.end_s - sim_log.start_s)
    idle -= metrics.allocated_gpu_s(sim_log)
    assert 0.0 <= metrics.idle_while_waiting_gpu_s(sim_log) <= idle + 1e-6


def test_idle_while_reserved_integrates_the_reserved_idle_series():
    # 3 GPUs idle on held nodes over [10, 40), then 1 until the end at 100: 90 + 60.
    sim_log = replace(log(), reserved_idle=((10.0, 3000), (40.0, 1000)))
    assert metrics.idle_while_reserved_gpu_s(sim_log) == pytest.approx(150.0)
    assert metrics.idle_while_reserved_gpu_s(log()) == 0.0


def test_attainment_within_guarantee_counts_only_fitting_demand():
    # a is guaranteed 4 GPUs and holds none over [0, 100). It waits for a gang of 8
    # (larger than its guarantee) all along and for a 2-GPU job over [50, 100).
    usage = [sample(0, "a", 0, 8000)]
    within = [sample(50, "a", 0, 2000)]
    sim_log = replace(
        log(usage=usage, guarantees={("a", "A100"): 4000}), usage_within=tuple(within)
    )
    assert metrics.quota_attainment(sim_log) == {"a": 0.0}
    assert metrics.attainment_within_guarantee(sim_log) == {"a": 0.0}
    # Holding 4 GPUs of anything meets the guarantee the fitting job is owed.
    held = [sample(0, "a", 4000, 4000), sample(50, "a", 4000, 6000)]
    sim_log = replace(sim_log, usage_within=tuple(held))
    assert metrics.attainment_within_guarantee(sim_log) == {"a": 1.0}
    # Nothing fitting waited: no guarantee was wanted.
    assert metrics.attainment_within_guarantee(replace(sim_log, usage_within=())) == {}
