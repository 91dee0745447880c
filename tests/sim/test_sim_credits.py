"""Credits in the simulator: the platform's charging module applied to a replay, table
style (cluster, tenants, jobs, grants and rates in; charges, refunds, starts out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mosu.core.credits import CreditPolicy, GrantState, Rate, RateCard, to_micro
from mosu.core.models import Node, Quota, Shape, Tenant
from mosu.engine.profiles import build_profile
from mosu.sim.credits import CreditBook, CreditFileError, _Grant, book_from_files
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces.schema import TraceJob

NODE = Node(name="n0", gpu_type="H800", gpus=8, cpu_milli=64_000, mem_mib=512_000)
TENANTS = (
    Tenant("a", quotas=(("H800", Quota(4000)),)),
    Tenant("b", quotas=(("H800", Quota(4000)),)),
)
CARD = RateCard([Rate("H800", 0, to_micro(3600))])  # one credit per GPU-second


def _job(i: int, tenant: str, submit: float, duration: float, gpus: int = 1, estimate=None):
    return TraceJob(
        id=f"{tenant}{i}",
        tenant=tenant,
        submit_s=submit,
        duration_s=duration,
        shape=Shape(gpus=gpus, gpu_milli=1000),
        gpu_types=("H800",),
        estimate_s=estimate,
    )


def _book(grants: dict[str, float], policies: dict[str, CreditPolicy]) -> CreditBook:
    return CreditBook(
        CARD,
        {
            t: [_Grant(GrantState(i, to_micro(amount), 0, None), "")]
            for i, (t, amount) in enumerate(grants.items())
        },
        policies,
        TENANTS,
        0.0,
    )


def test_charges_are_gpu_seconds_times_the_rate_and_an_unlimited_tenant_runs_on():
    jobs = [_job(0, "a", 0, 100, gpus=2), _job(1, "b", 0, 50, gpus=4)]
    book = _book({"a": 1_000_000}, {})
    result = replay(jobs, TENANTS, [NODE], build_profile("mosu"), credits=book)
    s = book.summary()
    assert s["a"]["charged"] == 200.0  # 2 GPUs x 100 s x 1 credit
    assert s["b"]["charged"] == 200.0  # no grant: charged, never limited
    assert s["a"]["ran_out_at_s"] is None
    assert all(o.finish_s is not None for o in result.log.outcomes)


def test_hold_starts_what_the_credits_cover_and_notes_when_they_ran_out():
    # Each job: 1 GPU for 100 s, estimated 100 s: 100 credits. 250 credits cover two.
    jobs = [_job(i, "a", 0, 100, estimate=100) for i in range(4)]
    book = _book({"a": 250}, {"a": CreditPolicy.HOLD})
    result = replay(jobs, TENANTS, [NODE], build_profile("mosu"), credits=book)
    started = sorted(o.job_id for o in result.log.outcomes if o.first_start_s is not None)
    assert started == ["a0", "a1"]
    s = book.summary()["a"]
    assert s["charged"] == 200.0
    assert s["ran_out_at_s"] is None  # 50 left: not out, yet too little for a third job


def test_stop_requeues_running_work_when_the_credits_run_out():
    jobs = [_job(0, "a", 0, 1000, estimate=10)]
    book = _book({"a": 100}, {"a": CreditPolicy.STOP})
    # Another tenant's arrivals are the events at which the ledger looks.
    jobs += [_job(i, "b", 50.0 * i, 1) for i in range(1, 6)]
    result = replay(jobs, TENANTS, [NODE], build_profile("mosu"), credits=book)
    a0 = next(o for o in result.log.outcomes if o.job_id == "a0")
    assert a0.finish_s is None and a0.preemptions == 1
    s = book.summary()["a"]
    assert s["ran_out_at_s"] == pytest.approx(100.0)  # 1 credit a second, 100 granted
    assert s["charged"] == 100.0  # the event at t=100 found it out and stopped it
    assert s["refunded"] == 0.0  # the tenant's own policy, not the scheduler's doing


def test_preempted_work_is_refunded_and_the_refund_is_the_lost_time():
    # b borrows the whole node; a's guarantee reclaims 4 GPUs at t=100. Checkpoints
    # every 30 s: b loses 100 - 90 = 10 s on each of 4 GPUs = 40 GPU-seconds.
    jobs = [_job(0, "b", 0, 1000, gpus=8), _job(0, "a", 100, 10, gpus=4)]
    book = _book({"a": 10**6, "b": 10**6}, {})
    profile = dataclasses.replace(build_profile("mosu"), min_runtime_s=0)
    result = replay(
        jobs, TENANTS, [NODE], profile, ReplayConfig(checkpoint_every_s=30), credits=book
    )
    b0 = next(o for o in result.log.outcomes if o.job_id == "b0")
    assert b0.preemptions == 1
    s = book.summary()["b"]
    assert s["refunded"] == pytest.approx(b0.lost_gpu_s)  # the simulator's own loss
    assert s["refunded_gpu_hours"] == pytest.approx(b0.lost_gpu_s / 3600, abs=1e-3)


def test_bad_files_name_the_line_and_column(tmp_path: Path):
    rates = tmp_path / "rates.csv"
    grants = tmp_path / "grants.csv"
    rates.write_text("resource,per_hour\nH800,two\n")
    grants.write_text("tenant,amount\na,5\n")
    with pytest.raises(CreditFileError, match=r"rates.csv:2: per_hour"):
        book_from_files(rates, grants, TENANTS, 0.0)
    rates.write_text("resource,per_hour\nH800,2\n")
    grants.write_text("tenant,amount,policy\na,5,maybe\n")
    with pytest.raises(CreditFileError, match=r"grants.csv:2: policy 'maybe'"):
        book_from_files(rates, grants, TENANTS, 0.0)
