"""End to end: a real server, real processes, borrowed GPUs reclaimed for their owner.

One node with 8 declared GPUs; tenant a is guaranteed 4, tenant b is guaranteed 4
and may borrow up to 8. b's 8-GPU job runs until a asks for its 4: then b's job
gets SIGTERM, checkpoints, and requeues; a's job starts on 4 GPUs; when a's job
ends, b's job starts again from its checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from mosu.core.api import JobSpec, JobState, QuotaSpec
from tests.e2e.conftest import REQUEUED_ONCE_THEN_SUCCEEDED, state_history, wait_for, worker_argv


def worker_job(name: str, gpus: float, out: Path, release: str) -> JobSpec:
    return JobSpec(name=name, gpus=gpus, command=worker_argv(out, release))


def start_record(out: Path, job_id: int, attempt: int, replica: int = 0) -> dict | None:
    path = out / f"start-{job_id}-{attempt}-{replica}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_borrowed_gpus_are_reclaimed_and_the_borrower_resumes(make_server, work: Path):
    out = work
    server = make_server("--gpus", "8", "--gpu-type", "H800", "--grace", "3", "--min-runtime", "0")
    with server.client() as op:
        a = op.create_tenant("a", {"H800": QuotaSpec(guaranteed=4)})
        b = op.create_tenant("b", {"H800": QuotaSpec(guaranteed=4, limit=8)})
    with server.client(a.token) as ca, server.client(b.token) as cb:
        big = cb.submit(worker_job("big", 8, out, "release-big"))
        wait_for(lambda: cb.get_job(big.id).state == JobState.RUNNING, timeout=10, what="b runs")
        first = wait_for(lambda: start_record(out, big.id, 1), timeout=10, what="b's process")
        assert first["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert first["resumed"] is False

        small = ca.submit(worker_job("small", 4, out, "release-small"))
        # Within 10 s: b checkpoints on SIGTERM and a's job runs on 4 GPUs.
        wait_for(lambda: (out / f"checkpoint-{big.id}").exists(), timeout=10, what="checkpoint")
        wait_for(lambda: ca.get_job(small.id).state == JobState.RUNNING, timeout=10, what="a runs")
        a_rec = wait_for(lambda: start_record(out, small.id, 1), timeout=10, what="a's process")
        # a's job started only after b's process had exited: no GPU was used twice.
        assert (out / f"terminated-{big.id}-1-0").exists()
        a_gpus = a_rec["CUDA_VISIBLE_DEVICES"].split(",")
        assert len(a_gpus) == 4
        assert len(set(a_gpus)) == 4

        waiting = wait_for(
            lambda: (j := cb.get_job(big.id)).state == JobState.PENDING and j.pending_reason and j,
            timeout=10,
            what="b pending with a reason",
        )
        assert waiting.attempts == 1
        assert cb.why(big.id).reason == waiting.pending_reason
        # A tenant cannot see another tenant's job.
        assert [j.id for j in ca.list_jobs()] == [small.id]

        (out / "release-small").write_text("")
        wait_for(
            lambda: ca.get_job(small.id).state == JobState.SUCCEEDED, timeout=10, what="a ends"
        )
        wait_for(lambda: cb.get_job(big.id).state == JobState.RUNNING, timeout=10, what="b again")
        second = wait_for(lambda: start_record(out, big.id, 2), timeout=10, what="b restarted")
        assert second["resumed"] is True
        assert second["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"

        (out / "release-big").write_text("")
        wait_for(lambda: cb.get_job(big.id).state == JobState.SUCCEEDED, timeout=10, what="b ends")

        assert state_history(cb, big.id) == REQUEUED_ONCE_THEN_SUCCEEDED
        stop = [e for e in cb.job_events(big.id) if e.kind == "stop-requested"]
        assert [e.reason for e in stop] == ["reclaim"]
        assert state_history(ca, small.id) == ["pending", "starting", "running", "succeeded"]
        usage = {(r.tenant, r.gpu_type) for r in cb.usage()}
        assert usage == {("b", "H800")}
