"""What a scheduling cycle writes to the store for jobs left pending: only reasons that
changed, only to the job version the cycle saw, and without bumping it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, select

from mosu.core.reasons import PendingReason
from mosu.engine.cycle import schedule
from mosu.service.db.rows import JobRow
from mosu.service.platform import Platform
from mosu.service.services.scheduling import apply_decisions, load_snapshot
from tests.service.conftest import FakeExecutor, seed, submit


def stored(platform: Platform, job_id: int) -> tuple[str, str | None, int]:
    with platform.tx() as s:
        row = s.execute(
            select(JobRow.state, JobRow.pending_reason, JobRow.version).where(JobRow.id == job_id)
        ).one()
        return row.state, row.pending_reason, row.version


def test_reasons_are_written_once_and_only_when_they_change(api, platform: Platform):
    tokens = seed(api, gpus=4)  # a, guaranteed 4, fills the node
    running = submit(api, tokens["a"], gpus=4)
    waiting = [submit(api, tokens["a"], gpus=4) for _ in range(3)]
    updates: list[str] = []

    def count(_conn, _cursor, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE JOBS"):
            updates.append(statement)

    event.listen(platform.engine, "before_cursor_execute", count)
    try:
        platform.loop.cycle()
        assert stored(platform, running["id"])[0] in ("starting", "running")
        first = [stored(platform, j["id"]) for j in waiting]
        assert all(state == "pending" and reason is not None for state, reason, _ in first)
        updates.clear()
        platform.loop.cycle()  # nothing changed: no job row is written
        assert updates == []
        assert [stored(platform, j["id"]) for j in waiting] == first
    finally:
        event.remove(platform.engine, "before_cursor_execute", count)


def test_a_job_cancelled_during_a_cycle_keeps_its_state_and_reason(api, platform: Platform):
    tokens = seed(api, gpus=4)  # a, guaranteed 4, fills the node
    submit(api, tokens["a"], gpus=4)
    job = submit(api, tokens["a"], gpus=4)
    platform.loop.cycle()
    assert stored(platform, job["id"])[1] is not None
    # A reason that differs from what the next cycle computes (the engine never gives
    # this one), so that cycle writes one;
    # then ``job`` is cancelled between that cycle's snapshot and its apply.
    with platform.tx() as s:
        row = s.get(JobRow, job["id"])
        assert row is not None
        row.pending_reason = PendingReason.WAITING_FOR_PREEMPTED
    with platform.tx() as s:
        loaded = load_snapshot(s, now=time.time())
    assert loaded.reasons[job["id"]][0] == PendingReason.WAITING_FOR_PREEMPTED
    r = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    before = stored(platform, job["id"])
    assert before[0] == "cancelled"
    result = schedule(loaded.snapshot, platform.loop._profile)
    assert any(p.job_id == str(job["id"]) for p in result.pending)
    with platform.tx() as s:
        apply_decisions(s, loaded=loaded, result=result, now=time.time())
    assert stored(platform, job["id"]) == before, "the cycle wrote nothing to the cancelled job"


def test_a_reason_write_leaves_the_version_for_a_concurrent_update(api, platform: Platform):
    tokens = seed(api, gpus=4)  # a, guaranteed 4, fills the node
    submit(api, tokens["a"], gpus=4)
    job = submit(api, tokens["a"], gpus=4)
    with platform.tx() as s:
        row = s.get(JobRow, job["id"])
        assert row is not None
        row.pending_reason = PendingReason.WAITING_FOR_PREEMPTED
    _, _, version = stored(platform, job["id"])
    platform.loop.cycle()
    state, reason, after = stored(platform, job["id"])
    assert (state, after) == ("pending", version)
    assert reason not in (None, PendingReason.WAITING_FOR_PREEMPTED)


def test_a_woken_loop_checks_exits_and_stops_at_most_once_a_poll_interval(
    platform: Platform, executor: FakeExecutor, monkeypatch
):
    polls: list[float] = []
    original = executor.poll
    loop = platform.loop
    now = [1000.0]
    loop.monotonic = lambda: now[0]  # the test, not the machine's speed, says when

    def counted() -> list:
        polls.append(now[0])
        return original()

    monkeypatch.setattr(executor, "poll", counted)
    # The loop thread's calls: one per wake, as under a burst of submissions.
    for _ in range(50):
        loop.run_once(force_cycle=True, throttle=True)
        now[0] += loop._poll_s / 100
    assert len(polls) == 1, "woken 50 times within one poll interval: housekeeping ran once"
    now[0] = 1000.0 + loop._poll_s  # one poll interval after the first housekeeping
    loop.run_once(force_cycle=False, throttle=True)
    assert len(polls) == 2, "a poll interval later it runs again"
    # Called directly (tests, one-shot commands) it always runs.
    loop.run_once()
    loop.run_once()
    assert len(polls) == 4


@pytest.mark.parametrize(
    ("last_cost_s", "since_s", "runs"),
    [
        (0.4, 0.19, False),
        (0.4, 0.21, True),
        (0.05, 0.03, True),
        (3.0, 0.49, False),
        (3.0, 0.5, True),
    ],
    ids=[
        "within half the last cycle",
        "after half of it",
        "a short cycle barely rests",
        "a long one rests at most MAX_REST_S",
        "and then runs",
    ],
)
def test_a_requested_cycle_rests_half_as_long_as_the_last_one_took(
    platform: Platform, last_cost_s: float, since_s: float, runs: bool
):
    loop = platform.loop
    now = [5000.0]
    loop._clock = lambda: now[0]
    loop.monotonic = lambda: now[0]
    loop._last_housekeeping = now[0]  # housekeeping is not what this is about
    loop._last_cycle = now[0]
    loop._last_cycle_end, loop._last_cycle_cost = now[0], last_cost_s
    now[0] += since_s
    before = loop.cycles
    loop.run_once(force_cycle=True, throttle=True)
    assert (loop.cycles == before + 1) is runs


def test_a_pending_jobs_first_plan_is_remembered_with_its_size_and_taught_at_its_start(
    platform: Platform, monkeypatch
):
    from types import SimpleNamespace

    from mosu.core.models import Job, Shape

    loop = platform.loop
    pending = (
        Job(id="1", tenant="a", shape=Shape(gpus=2), replicas=2),
        Job(id="2", tenant="a", shape=Shape(gpus=1)),
    )
    snap = SimpleNamespace(pending=pending, explain=True)

    def decision(job_id: str, planned: float | None) -> SimpleNamespace:
        return SimpleNamespace(job_id=job_id, planned_start_s=planned, basis="releases", reason="r")

    first = SimpleNamespace(pending=[decision("1", 130.0), decision("2", None)], starts=[])
    loop._learn_spread(snap, first, [], now=100.0)
    assert loop._plans == {1: ("releases", "r", 30.0, 100.0, 4000)}
    again = SimpleNamespace(pending=[decision("1", 150.0), decision("2", 160.0)], starts=[])
    loop._learn_spread(snap, again, [], now=110.0)
    assert loop._plans == {
        1: ("releases", "r", 30.0, 100.0, 4000),  # the first plan is kept
        2: ("releases", "r", 50.0, 110.0, 1000),
    }
    taught = []
    monkeypatch.setattr(loop.start_estimates.spread, "observe", lambda *args: taught.append(args))
    started = SimpleNamespace(pending=[], starts=[SimpleNamespace(job_id="2")])
    loop._learn_spread(snap, started, [1], now=125.0)
    assert taught == [("releases", "r", 4000, 30.0, 25.0)]
    assert loop._plans == {2: ("releases", "r", 50.0, 110.0, 1000)}
    # A cycle that explains only some jobs names none of the others: their plans stay.
    partial = SimpleNamespace(pending=pending, explain=False)
    loop._learn_spread(partial, SimpleNamespace(pending=[], starts=[]), [], now=130.0)
    assert loop._plans == {2: ("releases", "r", 50.0, 110.0, 1000)}
    loop._learn_spread(snap, SimpleNamespace(pending=[], starts=[]), [], now=131.0)
    assert loop._plans == {}
