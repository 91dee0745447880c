"""Checkpoints on the platform: the spec's fields, the last checkpoint stored and shown and
fed to the engine, and a preemption that asks for a checkpoint before it stops a job.

The executor here reports what the test says (its real counterparts are tested in
tests/agent/test_checkpoints.py and tests/e2e/test_checkpoint_e2e.py); the loop's clock is
the test's, so the wait for a checkpoint ends when the test says."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mosu.core.api import CheckpointReport, JobExit
from mosu.core.errors import InvalidInput
from mosu.core.executor import Capability, checkpoint_source
from mosu.core.submission import Submission
from mosu.documents import parse_job_spec
from mosu.engine.cycle import schedule
from mosu.service.db.rows import EventRow, JobRow
from mosu.service.platform import Platform
from mosu.service.services.scheduling import load_snapshot, store_checkpoints
from tests.service.conftest import FakeExecutor, bearer, open_platform, seed, submit

CHECKPOINTING = {"checkpoint_every": "30m", "checkpoint_signal": "SIGUSR1"}


class CheckpointingExecutor(FakeExecutor):
    """A fake executor that declares checkpoints: reports are set by the test."""

    capabilities = frozenset({Capability.CHECKPOINTS})

    def __init__(self) -> None:
        super().__init__()
        self.reports: dict[int, CheckpointReport] = {}
        self.asked: list[tuple[int, str]] = []

    def checkpoints(self) -> dict[int, CheckpointReport]:
        return {j: r for j, r in self.reports.items() if j in self.launched}

    def request_checkpoint(self, job_id: int, signal: str) -> bool:
        self.asked.append((job_id, signal))
        attempt = self.launched[job_id].attempt
        self.reports[job_id] = CheckpointReport(attempt=attempt, requested=True)
        return True


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def ckpt_executor() -> CheckpointingExecutor:
    return CheckpointingExecutor()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cplatform(db_url, tmp_path, ckpt_executor, clock):
    p = open_platform(tmp_path / "data", db_url, ckpt_executor, grace_s=0.1, min_runtime_s=0)
    p.loop._clock = clock
    yield p
    p.close()


@pytest.fixture
def capi(cplatform):
    from fastapi.testclient import TestClient

    from mosu.service.app import create_app
    from tests.service.conftest import OPERATOR_TOKEN

    with TestClient(create_app(cplatform), raise_server_exceptions=True) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
        yield client


def run(platform: Platform) -> None:
    platform.loop.record_checkpoints(force=True)
    platform.loop.run_once()


def events(platform: Platform, job_id: int) -> list[tuple[str, str | None]]:
    with platform.tx() as s:
        rows = s.scalars(select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id))
        return [(e.kind, e.to_state if e.kind == "state" else e.reason) for e in rows]


def kinds(platform: Platform, job_id: int) -> list[str]:
    return [k for k, _ in events(platform, job_id)]


# ---------------------------------------------------------------- the spec


def test_a_spec_declares_its_checkpoint_signal_and_how_long_to_wait():
    job = Submission.of(
        parse_job_spec(
            "name: x\ncommand: t\ncheckpoint_every: 30m\ncheckpoint_signal: SIGUSR1\n"
            "checkpoint_grace: 5m\n"
        )
    )
    assert (job.checkpoint_signal, job.checkpoint_grace_s) == ("SIGUSR1", 300)
    default = Submission.of(
        parse_job_spec("name: x\ncommand: t\ncheckpoint_every: 30m\ncheckpoint_signal: SIGUSR2\n")
    )
    assert (default.checkpoint_signal, default.checkpoint_grace_s) == ("SIGUSR2", 120)
    plain = Submission.of(parse_job_spec("name: x\ncommand: t\ncheckpoint_every: 30m\n"))
    assert (plain.checkpoint_signal, plain.checkpoint_grace_s) == (None, None)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ("checkpoint_signal: SIGUSR1\n", "checkpoint_signal", "needs checkpoint_every"),
        ("checkpoint_every: 30m\ncheckpoint_signal: SIGTERM\n", "checkpoint_signal", "SIGUSR1"),
        ("checkpoint_every: 30m\ncheckpoint_signal: USR1\n", "checkpoint_signal", "SIGUSR1"),
        ("checkpoint_every: 30m\ncheckpoint_grace: 1m\n", "checkpoint_grace", "checkpoint_signal"),
        (
            "checkpoint_every: 30m\ncheckpoint_signal: SIGUSR1\ncheckpoint_grace: 2h\n",
            "checkpoint_grace",
            "at most 30m",
        ),
    ],
    ids=["signal without interval", "SIGTERM", "no SIG prefix", "grace alone", "grace too long"],
)
def test_a_bad_checkpoint_field_is_named(extra, field, words):
    with pytest.raises(InvalidInput) as caught:
        parse_job_spec("name: x\ncommand: t\n" + extra, source="job.yaml")
    assert caught.value.field == field
    assert words in caught.value.message


def test_the_api_names_the_field_too(api):
    tokens = seed(api)
    body = {"name": "j", "command": ["true"], "checkpoint_signal": "SIGUSR1"}
    r = api.post("/v1/jobs", json=body, headers=bearer(tokens["a"]))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "checkpoint_signal"


# ---------------------------------------------------------------- reports


def test_reports_are_stored_clamped_and_only_for_the_running_attempt(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=1, checkpoint_every="30m")
    platform.loop.run_once()
    now = time.time()
    with platform.tx() as s:
        started = s.get(JobRow, job["id"]).started_at

    def stored(report: CheckpointReport, at: float) -> float | None:
        with platform.tx() as s:
            store_checkpoints(s, {job["id"]: report}, now=at)
        with platform.tx() as s:
            return s.get(JobRow, job["id"]).last_checkpoint_at

    assert stored(CheckpointReport(attempt=1, at=started - 60), now) is None, "before its start"
    assert stored(CheckpointReport(attempt=2, at=now), now) is None, "another attempt's"
    assert stored(CheckpointReport(attempt=1, at=now + 3600), now) == now, "future: now"
    assert stored(CheckpointReport(attempt=1, at=now + 0.5), now + 1) == now + 0.5
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["last_checkpoint_at"] is not None
    with platform.tx() as s:
        version = s.get(JobRow, job["id"]).version
    stored(CheckpointReport(attempt=1, at=now), now)
    with platform.tx() as s:
        assert s.get(JobRow, job["id"]).version == version, "a report bumps no version"


@pytest.mark.parametrize("fresh", [0, 1], ids=["first-job-reported", "second-job-reported"])
def test_a_job_just_past_its_checkpoint_is_the_victim_of_choice(api, platform, fresh):
    """Two identical borrowed jobs, 1,000 s into a 30-minute checkpoint interval by the
    engine's reckoning; one has just reported a checkpoint. Reclaim takes that one."""
    tokens = seed(api)
    borrowed = [submit(api, tokens["b"], gpus=4, checkpoint_every="30m") for _ in range(2)]
    platform.loop.run_once()
    now = time.time()
    with platform.tx() as s:
        for k, job in enumerate(borrowed):
            row = s.get(JobRow, job["id"])
            assert row.state == "running"
            row.started_at = now - 1000
            row.last_checkpoint_at = now - 5 if k == fresh else None
    submit(api, tokens["a"], gpus=4)
    with platform.tx() as s:
        loaded = load_snapshot(s, now=now)
    seen = {r.job.id: r.last_checkpoint_s for r in loaded.snapshot.running}
    assert seen == {str(borrowed[fresh]["id"]): now - 5, str(borrowed[1 - fresh]["id"]): None}
    result = schedule(loaded.snapshot, platform.loop._profile)
    assert [p.job_id for p in result.preemptions] == [str(borrowed[fresh]["id"])]


# ---------------------------------------------------------------- asked before stopped


def preempt_borrower(capi, cplatform, **spec) -> tuple[dict, dict]:
    tokens = seed(capi)
    big = submit(capi, tokens["b"], gpus=8, **spec)
    run(cplatform)
    assert capi.get(f"/v1/jobs/{big['id']}").json()["state"] == "running"
    small = submit(capi, tokens["a"], gpus=4)
    run(cplatform)
    return big, small


def test_a_preempted_job_is_asked_for_a_checkpoint_and_stopped_once_it_reports(
    capi, cplatform, ckpt_executor, clock
):
    big, _ = preempt_borrower(capi, cplatform, checkpoint_grace="5m", **CHECKPOINTING)
    job_id = big["id"]
    assert ckpt_executor.asked == [(job_id, "SIGUSR1")]
    assert ckpt_executor.stopped == [], "asked first, not stopped"
    clock.offset = 60
    run(cplatform)
    assert ckpt_executor.stopped == []
    at = time.time() + 59
    ckpt_executor.reports[job_id] = CheckpointReport(
        attempt=1, at=at, requested=True, answered=True
    )
    run(cplatform)
    assert ckpt_executor.stopped == [job_id]
    shown = capi.get(f"/v1/jobs/{job_id}").json()
    assert shown["stop_requested"] == "preempt" and shown["last_checkpoint_at"] is not None
    ckpt_executor.exit(job_id, 0)
    run(cplatform)
    got = events(cplatform, job_id)
    assert got[-5:] == [
        ("stop-requested", "reclaim"),
        ("checkpoint-requested", "preempt"),
        ("checkpointed", "preempt"),
        ("state", "preempted"),
        ("state", "pending"),
    ]
    with cplatform.tx() as s:
        row = s.get(JobRow, job_id)
        assert row.checkpoint_requested_at is None, "cleared with the requeue"
        assert row.last_checkpoint_at == pytest.approx(min(at, time.time() + 60))
        message = s.scalars(
            select(EventRow.message).where(
                EventRow.job_id == job_id, EventRow.kind == "checkpoint-requested"
            )
        ).one()
    assert message == "asked to checkpoint (SIGUSR1); stopped in 300 s at the latest"


def test_a_job_that_does_not_answer_is_stopped_when_its_wait_ends_not_before(
    capi, cplatform, ckpt_executor, clock
):
    big, _ = preempt_borrower(capi, cplatform, checkpoint_grace="5m", **CHECKPOINTING)
    job_id = big["id"]
    for offset in (0, 100, 299):
        clock.offset = offset
        run(cplatform)
        assert ckpt_executor.stopped == [], f"stopped {offset} s into a 300 s wait"
    clock.offset = 301
    run(cplatform)
    assert ckpt_executor.stopped == [job_id]
    assert kinds(cplatform, job_id)[-1] == "checkpoint-missed"
    assert ckpt_executor.asked == [(job_id, "SIGUSR1")], "asked once"


def test_a_cancel_is_never_asked_for_a_checkpoint(capi, cplatform, ckpt_executor):
    tokens = seed(capi)
    job = submit(capi, tokens["b"], gpus=8, **CHECKPOINTING)
    run(cplatform)
    r = capi.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(tokens["b"]))
    assert r.status_code == 200
    run(cplatform)
    assert (ckpt_executor.asked, ckpt_executor.stopped) == ([], [job["id"]])


def test_a_job_without_a_signal_is_stopped_at_once(capi, cplatform, ckpt_executor):
    big, _ = preempt_borrower(capi, cplatform, checkpoint_every="30m")
    assert (ckpt_executor.asked, ckpt_executor.stopped) == ([], [big["id"]])


def test_an_exit_while_asked_records_whether_the_checkpoint_came(capi, cplatform, ckpt_executor):
    big, _ = preempt_borrower(capi, cplatform, **CHECKPOINTING)
    job_id = big["id"]
    report = CheckpointReport(attempt=1, at=time.time(), requested=True, answered=True)
    ckpt_executor.exits.append(JobExit(job_id=job_id, attempt=1, exit_code=0, checkpoint=report))
    run(cplatform)
    assert [k for k in kinds(cplatform, job_id) if k != "state"][-2:] == [
        "checkpoint-requested",
        "checkpointed",
    ]
    assert capi.get(f"/v1/jobs/{job_id}").json()["state"] == "pending"
    assert ckpt_executor.stopped == []


def test_an_executor_without_the_capability_is_never_asked(api, platform, executor):
    assert checkpoint_source(executor) is None
    tokens = seed(api)
    big = submit(api, tokens["b"], gpus=8, **CHECKPOINTING)
    platform.loop.run_once()
    submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    assert executor.stopped == [big["id"]]


def test_a_platform_without_reports_keeps_the_engine_s_assumption(api, platform):
    tokens = seed(api)
    submit(api, tokens["b"], gpus=8, checkpoint_every="30m")
    platform.loop.run_once()
    with platform.tx() as s:
        loaded = load_snapshot(s, now=time.time())
    assert [r.last_checkpoint_s for r in loaded.snapshot.running] == [None]
