"""Invariants of one cycle over random clusters, tenants and queues (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.core.models import GPU_MILLI, Job, Quota, RunningJob, Tenant
from mosu.engine.cycle import schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.placement.base import place_job
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import PROFILES, QuotaMode, build_profile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node

NOW = 50_000.0


@st.composite
def worlds(
    draw: st.DrawFn, *, one_gpu_pending: bool = False, cohorts: bool = False
) -> ClusterSnapshot:
    nodes = [
        node(f"n{i}", draw(st.sampled_from([2, 4, 8]))) for i in range(draw(st.integers(1, 4)))
    ]
    capacity = sum(n.gpus for n in nodes)
    names = ["a", "b", "c"][: draw(st.integers(1, 3))]
    tenants = []
    left = capacity
    for name in names:
        g = draw(st.integers(0, left))
        left -= g
        limit = draw(st.one_of(st.none(), st.integers(g, capacity)))
        quota = Quota(g * GPU_MILLI, None if limit is None else limit * GPU_MILLI)
        weight = draw(st.sampled_from([1.0, 2.0]))
        cohort = draw(st.sampled_from([None, "x", "y"])) if cohorts else None
        tenants.append(Tenant(name, (("A100", quota),), weight=weight, cohort=cohort))
    state = ClusterState(nodes)
    running = []
    for i in range(draw(st.integers(0, 8))):
        j = job(
            f"r{i}",
            draw(st.sampled_from([1, 2, 4])),
            tenant=draw(st.sampled_from(names)),
            t=float(i),
            priority=draw(st.integers(0, 1)),
        )
        j = replace(j, checkpoint_every_s=draw(st.sampled_from([None, 600.0])))
        placement = place_job(state, j, BestFit())
        if placement is None:
            continue
        state.assign(j.id, placement)
        started = draw(st.sampled_from([0.0, NOW - 60, NOW - 5_000]))
        running.append(RunningJob(j, placement, started_s=started))
    pending = [
        job(
            f"p{i}",
            1 if one_gpu_pending else draw(st.sampled_from([1, 2, 4, 8])),
            replicas=1 if one_gpu_pending else draw(st.integers(1, 2)),
            tenant=draw(st.sampled_from(names)),
            t=100.0 + i,
            priority=draw(st.integers(0, 1)),
            estimate=draw(st.one_of(st.none(), st.sampled_from([100.0, 10_000.0]))),
        )
        for i in range(draw(st.integers(0, 10)))
    ]
    return ClusterSnapshot(
        now=NOW,
        nodes=tuple(nodes),
        tenants=tuple(tenants),
        running=tuple(running),
        pending=tuple(pending),
    )


def apply(snap: ClusterSnapshot, result: CycleResult) -> tuple[ClusterState, dict[str, Job]]:
    """Apply decisions the way a caller must; raises on any double allocation."""
    state = ClusterState(snap.nodes)
    holders: dict[str, Job] = {}
    for run in snap.running:
        state.assign(run.job.id, run.placement)
        holders[run.job.id] = run.job
    for pre in result.preemptions:
        state.release(pre.job_id)
        del holders[pre.job_id]
    pending = {j.id: j for j in snap.pending}
    for start in result.starts:
        state.assign(start.job_id, start.placement)  # raises if a GPU is taken twice
        holders[start.job_id] = pending.pop(start.job_id)
    return state, holders


def usage(holders: dict[str, Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in holders.values():
        out[j.tenant] = out.get(j.tenant, 0) + j.total_gpu_milli
    return out


@settings(max_examples=150, deadline=None)
@given(snap=worlds(), name=st.sampled_from(sorted(PROFILES)))
def test_no_double_allocation_and_no_tenant_above_its_limit(
    snap: ClusterSnapshot, name: str
) -> None:
    profile = build_profile(name)
    if profile.needs_true_remaining:
        snap = replace(snap, true_remaining_s={j.id: 1_000.0 for j in snap.pending})
    result = schedule(snap, profile)
    _, holders = apply(snap, result)
    decided = [s.job_id for s in result.starts] + [p.job_id for p in result.pending]
    assert sorted(decided) == sorted(j.id for j in snap.pending)
    running_ids = {r.job.id for r in snap.running}
    assert all(p.job_id in running_ids for p in result.preemptions)
    if profile.quotas == QuotaMode.SHARED:
        return
    before = usage({r.job.id: r.job for r in snap.running})
    after = usage(holders)
    for t in snap.tenants:
        quota = t.quota("A100")
        limit = quota.guaranteed_milli if profile.quotas == QuotaMode.STATIC else quota.limit_milli
        if limit is not None:
            assert after.get(t.name, 0) <= max(limit, before.get(t.name, 0))


@settings(max_examples=150, deadline=None)
@given(snap=worlds(one_gpu_pending=True))
def test_guarantees_are_honoured_whenever_demanded(snap: ClusterSnapshot) -> None:
    profile = replace(build_profile("mosu"), min_runtime_s=0.0)
    result = schedule(snap, profile)
    _, holders = apply(snap, result)
    after = usage(holders)
    for t in snap.tenants:
        demand = after.get(t.name, 0) + sum(
            p_job.total_gpu_milli
            for p_job in snap.pending
            if p_job.tenant == t.name and p_job.id not in holders
        )
        want = min(t.quota("A100").guaranteed_milli, demand)
        assert after.get(t.name, 0) >= want, (t.name, after, want)


@settings(max_examples=150, deadline=None)
@given(snap=worlds(one_gpu_pending=True))
def test_a_guarantee_put_off_is_paid_by_the_next_checkpoint(snap: ClusterSnapshot) -> None:
    """A reclaim waiting for its victims' checkpoint asks for a cycle no later than the
    longest checkpoint interval from now (600 s here, plus the margin)."""
    profile = replace(
        build_profile("mosu"),
        min_runtime_s=0.0,
        reclaim_at_checkpoint=True,
        checkpoint_wait_min_gpus=1,
    )
    result = schedule(snap, profile)
    _, holders = apply(snap, result)
    after = usage(holders)
    for t in snap.tenants:
        demand = after.get(t.name, 0) + sum(
            p_job.total_gpu_milli
            for p_job in snap.pending
            if p_job.tenant == t.name and p_job.id not in holders
        )
        if after.get(t.name, 0) < min(t.quota("A100").guaranteed_milli, demand):
            assert result.wake_at_s is not None, (t.name, after)
            assert snap.now < result.wake_at_s <= snap.now + 601.0


def over_guarantee_outside(snap: ClusterSnapshot, holders: dict[str, Job]) -> tuple[int, int]:
    """What cohorts together hold above their summed guarantees, and the capacity
    guaranteed to nobody that they may hold it on."""
    cohort_of = {t.name: t.cohort or "" for t in snap.tenants}
    guaranteed: dict[str, int] = {}
    for t in snap.tenants:
        c = cohort_of[t.name]
        guaranteed[c] = guaranteed.get(c, 0) + t.quota("A100").guaranteed_milli
    used: dict[str, int] = {}
    for tenant, milli in usage(holders).items():
        c = cohort_of.get(tenant, "")
        used[c] = used.get(c, 0) + milli
    over = sum(max(0, used.get(c, 0) - g) for c, g in guaranteed.items())
    spare = max(0, sum(n.gpus for n in snap.nodes) * GPU_MILLI - sum(guaranteed.values()))
    return over, spare


@settings(max_examples=200, deadline=None)
@given(snap=worlds(cohorts=True), name=st.sampled_from(["mosu", "kueue"]))
def test_no_cohort_borrows_another_cohorts_idle_guarantee(snap: ClusterSnapshot, name: str) -> None:
    """Only new borrowing is checked: a start that leaves its tenant above its guarantee
    never leaves the cohorts holding more above their guarantees than the capacity
    guaranteed to nobody (or more than before it). A start within the tenant's own
    guarantee may leave an earlier borrower of its cohort on another cohort's idle
    guarantee; reclaim takes that back when the other cohort asks for it."""
    result = schedule(snap, build_profile(name))
    holders = {r.job.id: r.job for r in snap.running}
    for pre in result.preemptions:  # as a caller applies them: all before the starts
        del holders[pre.job_id]
    pending = {j.id: j for j in snap.pending}
    guarantee = {t.name: t.quota("A100").guaranteed_milli for t in snap.tenants}
    for start in result.starts:
        before, spare = over_guarantee_outside(snap, holders)
        started = holders[start.job_id] = pending[start.job_id]
        if usage(holders).get(started.tenant, 0) > guarantee[started.tenant]:
            after, _ = over_guarantee_outside(snap, holders)
            assert after <= max(spare, before), (start.job_id, before, after, spare)
