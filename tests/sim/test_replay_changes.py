"""Timed changes in a replay: a quota, weight or node change made during a history's
window is applied at its time, and only from then on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mosu.core.models import GPU_MILLI, NodeState, Quota, Shape, Tenant
from mosu.engine.profiles import build_profile
from mosu.sim.replay import replay
from mosu.sim.whatif import REPLAY_CONFIG, Changes, History, plan_whatif, run_whatif
from mosu.traces.schema import ChangeKind, TimedChange, TraceJob
from tests.engine.helpers import node

MOSU = build_profile("mosu")


def tjob(job_id: str, submit: float, duration: float, gpus: int, tenant: str = "a") -> TraceJob:
    return TraceJob(job_id, tenant, submit, duration, Shape(gpus=gpus), gpu_types=("A100",))


def limited(limit_gpus: int) -> Tenant:
    return Tenant("a", (("A100", Quota(4 * GPU_MILLI, limit_gpus * GPU_MILLI)),))


def starts(result) -> dict[str, float | None]:
    return {o.job_id: o.first_start_s for o in result.log.outcomes}


JOBS = [tjob("j1", 0.0, 100.0, 4), tjob("j2", 10.0, 50.0, 4)]
"""On one 8-GPU node a tenant limited to 4 GPUs runs one job at a time: j2 waits for j1."""


def test_a_raised_limit_lets_the_waiting_job_start_at_the_change():
    before = replay(JOBS, [limited(4)], [node("n0")], MOSU, REPLAY_CONFIG)
    assert starts(before) == {"j1": 0.0, "j2": 100.0}
    raise_limit = TimedChange(
        30.0, ChangeKind.QUOTA, "a", gpu_type="A100", quota=Quota(4 * GPU_MILLI, 8 * GPU_MILLI)
    )
    after = replay(JOBS, [limited(4)], [node("n0")], MOSU, REPLAY_CONFIG, changes=[raise_limit])
    assert starts(after) == {"j1": 0.0, "j2": 30.0}
    assert "30.000 change quota a" in after.decisions
    # The metrics' guarantees are those in force at the start.
    assert after.log.guarantees == {("a", "A100"): 4 * GPU_MILLI}


def test_a_lowered_limit_holds_later_jobs_but_never_stops_a_running_one():
    lower = TimedChange(
        5.0, ChangeKind.QUOTA, "a", gpu_type="A100", quota=Quota(4 * GPU_MILLI, 4 * GPU_MILLI)
    )
    jobs = [tjob("j1", 0.0, 100.0, 4), tjob("j2", 1.0, 100.0, 4), tjob("j3", 10.0, 10.0, 4)]
    result = replay(jobs, [limited(8)], [node("n0")], MOSU, REPLAY_CONFIG, changes=[lower])
    assert starts(result) == {"j1": 0.0, "j2": 1.0, "j3": 101.0}
    assert all(o.preemptions == 0 for o in result.log.outcomes)


def test_a_node_added_during_the_window_takes_work_from_its_time():
    late = node("n1", 8)
    added = TimedChange(40.0, ChangeKind.NODE, "n1", node_state=NodeState.READY)
    jobs = [tjob("j1", 0.0, 100.0, 8), tjob("j2", 10.0, 100.0, 8)]
    tenants = [Tenant("a", (("A100", Quota(16 * GPU_MILLI)),))]
    nodes = [node("n0", 8), replace(late, state=NodeState.DOWN)]
    result = replay(jobs, tenants, nodes, MOSU, REPLAY_CONFIG, changes=[added])
    assert starts(result) == {"j1": 0.0, "j2": 40.0}
    assert result.log.capacity_milli == 16 * GPU_MILLI


def test_a_node_down_requeues_what_ran_there_and_a_drained_one_lets_it_finish():
    tenants = [Tenant("a", (("A100", Quota(16 * GPU_MILLI)),))]
    jobs = [tjob("j1", 0.0, 100.0, 8), tjob("j2", 0.0, 100.0, 8)]
    nodes = [node("n0", 8), node("n1", 8)]
    drained = TimedChange(20.0, ChangeKind.NODE, "n0", node_state=NodeState.DRAINING)
    lost = TimedChange(20.0, ChangeKind.NODE, "n1", node_state=NodeState.DOWN)
    back = TimedChange(50.0, ChangeKind.NODE, "n1", node_state=NodeState.READY)
    result = replay(jobs, tenants, nodes, MOSU, REPLAY_CONFIG, changes=[drained, lost, back])
    out = {o.job_id: o for o in result.log.outcomes}
    on_n1 = next(j for j in ("j1", "j2") if any(f"start {j} n1:" in d for d in result.decisions))
    on_n0 = "j2" if on_n1 == "j1" else "j1"
    assert (out[on_n0].finish_s, out[on_n0].preemptions) == (100.0, 0)
    # Requeued at 20 s, started again on n1 once it is back (n0 is drained), from scratch.
    assert out[on_n1].preemptions == 1
    assert out[on_n1].finish_s == 150.0


def test_a_change_naming_no_tenant_or_node_is_refused():
    for change in (
        TimedChange(1.0, ChangeKind.WEIGHT, "nobody", weight=2.0),
        TimedChange(1.0, ChangeKind.NODE, "n9", node_state=NodeState.DOWN),
    ):
        with pytest.raises(ValueError, match="names no"):
            replay(JOBS, [limited(4)], [node("n0")], MOSU, REPLAY_CONFIG, changes=[change])


def test_a_whatif_replays_the_history_changes_under_its_own():
    raise_limit = TimedChange(
        30.0, ChangeKind.QUOTA, "a", gpu_type="A100", quota=Quota(4 * GPU_MILLI, 8 * GPU_MILLI)
    )
    gone = TimedChange(50.0, ChangeKind.NODE, "n1", node_state=NodeState.DOWN)
    history = History(
        tuple(JOBS), (limited(4),), (node("n0"), node("n1")), changes=(raise_limit, gone)
    )
    plan = plan_whatif(
        history,
        Changes(guarantees=(("a", "A100", 2 * GPU_MILLI),), remove_nodes=("n1",)),
        tick_s=60.0,
    )
    assert plan.base.changes == (
        replace(raise_limit, time_s=60.0),
        replace(gone, time_s=60.0),
    )
    # The what-if's guarantee holds over the window; the recorded limit still changes.
    (changed,) = plan.changed.changes
    assert changed.quota == Quota(2 * GPU_MILLI, 8 * GPU_MILLI)
    report = run_whatif(plan).report
    assert report["before"]["overall"]["jobs"] == 2
