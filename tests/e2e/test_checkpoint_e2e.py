"""End to end: a real server, real processes, a preemption at a checkpoint boundary.

One node with 8 declared GPUs; tenant a is guaranteed 4, tenant b is guaranteed 4 and
may borrow up to 8. b's 8-GPU job declares ``checkpoint_signal: SIGUSR1``. When a asks
for its 4 GPUs, b's job is first sent SIGUSR1, saves its state and reports it through
``MOSU_CHECKPOINT_FILE``; the report is recorded (the API shows ``last_checkpoint_at``);
only then is the job stopped, requeued, and later resumed from what it saved. A job that
ignores the signal (and SIGTERM too) is stopped anyway once its wait and grace are over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mosu.core.api import JobSpec, JobState, QuotaSpec
from mosu.service.db.convert import ts
from tests.e2e.conftest import REQUEUED_ONCE_THEN_SUCCEEDED, state_history, wait_for
from tests.jobs import JOB_PYTHON, shared_copy

WORKER = Path(__file__).with_name("checkpoint_worker.py")
GRACE_S = 3


@pytest.fixture
def out(work: Path) -> Path:
    shared_copy(WORKER, work)
    return work


def journal(out: Path, job_id: int) -> list[tuple[str, int, float]]:
    path = out / f"journal-{job_id}"
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(what, int(attempt), float(at)) for what, attempt, at in lines]


def job(name: str, gpus: int, out: Path, release: str, mode: str, **extra: object) -> JobSpec:
    command = [JOB_PYTHON, str(out / WORKER.name), str(out), release, mode]
    return JobSpec(name=name, gpus=gpus, command=command, **extra)  # type: ignore[arg-type]


def start_cluster(make_server):
    server = make_server(
        "--gpus", "8", "--gpu-type", "H800", "--grace", str(GRACE_S), "--min-runtime", "0"
    )
    with server.client() as op:
        a = op.create_tenant("a", {"H800": QuotaSpec(guaranteed=4)})
        b = op.create_tenant("b", {"H800": QuotaSpec(guaranteed=4, limit=8)})
    return server, a, b


def test_a_preempted_job_checkpoints_when_asked_then_stops_and_resumes(make_server, out):
    server, a, b = start_cluster(make_server)
    with server.client(a.token) as ca, server.client(b.token) as cb:
        spec = job(
            "big",
            8,
            out,
            "release-big",
            "trap",
            checkpoint_every="30m",
            checkpoint_signal="SIGUSR1",
            checkpoint_grace="2m",
        )
        big = cb.submit(spec)
        wait_for(lambda: journal(out, big.id), timeout=15, what="b's job runs")
        assert cb.get_job(big.id).last_checkpoint_at is None

        small = ca.submit(job("small", 4, out, "release-small", "trap"))
        wait_for(
            lambda: cb.get_job(big.id).state == JobState.PENDING, timeout=30, what="b requeued"
        )
        events = cb.job_events(big.id)
        kinds = [e.kind for e in events if e.kind != "state"]
        assert kinds[-3:] == ["stop-requested", "checkpoint-requested", "checkpointed"]
        at = {e.kind: e.at for e in events if e.kind != "state"}
        preempted = next(e.at for e in events if e.to_state == "preempted")
        # The job heard the signal and saved, then was told to stop, in that order.
        seen = journal(out, big.id)
        assert [(what, attempt) for what, attempt, _ in seen] == [
            ("start", 1),
            ("asked", 1),
            ("saved", 1),
            ("term", 1),
        ]
        saved, term = seen[2][2], seen[3][2]
        assert saved < term
        # The report is what the platform recorded, before it sent the stop.
        shown = cb.get_job(big.id).last_checkpoint_at
        assert shown is not None
        assert at["checkpoint-requested"] <= shown <= at["checkpointed"] <= preempted
        assert shown == ts(saved) or abs((shown - ts(saved)).total_seconds()) < 0.05

        wait_for(lambda: ca.get_job(small.id).state == JobState.RUNNING, timeout=15, what="a")
        (out / "release-small").write_text("")
        wait_for(lambda: cb.get_job(big.id).state == JobState.RUNNING, timeout=30, what="b again")
        wait_for(
            lambda: [w for w, n, _ in journal(out, big.id) if n == 2] == ["resumed"],
            timeout=15,
            what="b resumed from its checkpoint",
        )
        (out / "release-big").write_text("")
        wait_for(lambda: cb.get_job(big.id).state == JobState.SUCCEEDED, timeout=15, what="end")
        assert state_history(cb, big.id) == REQUEUED_ONCE_THEN_SUCCEEDED


def test_a_job_deaf_to_the_signal_is_stopped_when_its_wait_and_grace_are_over(make_server, out):
    server, a, b = start_cluster(make_server)
    wait_s = 2
    with server.client(a.token) as ca, server.client(b.token) as cb:
        spec = job(
            "deaf",
            8,
            out,
            "release-deaf",
            "deaf",
            checkpoint_every="30m",
            checkpoint_signal="SIGUSR1",
            checkpoint_grace=f"{wait_s}s",
        )
        deaf = cb.submit(spec)
        wait_for(lambda: journal(out, deaf.id), timeout=15, what="b's job runs")
        small = ca.submit(job("small", 4, out, "release-small", "trap"))
        wait_for(
            lambda: cb.get_job(deaf.id).state == JobState.PENDING, timeout=60, what="b requeued"
        )
        wait_for(lambda: ca.get_job(small.id).state == JobState.RUNNING, timeout=15, what="a")
        events = cb.job_events(deaf.id)
        kinds = [e.kind for e in events if e.kind != "state"]
        assert kinds[-3:] == ["stop-requested", "checkpoint-requested", "checkpoint-missed"]
        at = {e.kind: e.at for e in events if e.kind != "state"}
        preempted = next(e.at for e in events if e.to_state == "preempted")
        # Never stopped before its wait was over; killed once the grace after it was.
        waited = (at["checkpoint-missed"] - at["checkpoint-requested"]).total_seconds()
        assert waited >= wait_s
        assert (preempted - at["checkpoint-missed"]).total_seconds() >= GRACE_S
        assert cb.get_job(deaf.id).last_checkpoint_at is None
        assert "killed by SIGKILL" in cb.get_job(deaf.id).message
        (out / "release-small").write_text("")
        (out / "release-deaf").write_text("")
