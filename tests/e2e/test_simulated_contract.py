"""The simulated executor's contract: the same jobs through a real server give the same
events and outcomes with the simulated executor as with the local one (real processes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mosu.client import Client
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import Server, wait_for

FINAL = {"succeeded", "failed", "cancelled"}

JOBS = {
    "ok": JobSpec(name="ok", gpus=2, command="sleep 0.5"),
    "fails": JobSpec(name="fails", gpus=1, command="sleep 0.3; exit 3"),
    "gang": JobSpec(name="gang", gpus=2, replicas=2, command="sleep 0.5"),
    "estimate": JobSpec(
        name="estimate", gpus=1, command="sleep 0.4", env={"SIMULATED_DURATION": "0.4"}
    ),
    "cancelled": JobSpec(name="cancelled", gpus=1, command="sleep 60"),
}


def _run_jobs(server: Server) -> dict[str, tuple[object, ...]]:
    """Each job's final state, exit code and message, and its event history as
    (kind, from, to, reason); node names and times differ between the executors."""
    with server.client() as op:
        token = op.create_tenant("a", {"H800": QuotaSpec(guaranteed=8)}).token
    with Client(server.url, token, timeout=10) as a:
        ids = {name: a.submit(spec).id for name, spec in JOBS.items()}
        wait_for(
            lambda: a.get_job(ids["cancelled"]).state == "running", timeout=30, what="a running job"
        )
        a.cancel(ids["cancelled"])
        wait_for(
            lambda: all(a.get_job(i).state in FINAL for i in ids.values()),
            timeout=60,
            what="every job to end",
        )
        out: dict[str, tuple[object, ...]] = {}
        for name, job_id in ids.items():
            job = a.get_job(job_id)
            history = tuple(
                (e.kind, e.from_state, e.to_state, e.reason) for e in a.job_events(job_id)
            )
            out[name] = (job.state, job.exit_code, job.message, history)
        return out


def test_simulated_executor_gives_the_local_executors_events(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    common = ("--grace", "2", "--min-runtime", "0")
    local = make_server("--gpus", "8", "--gpu-type", "H800", *common)
    local_runs = _run_jobs(local)
    local.stop()
    simulated = make_server(
        "--executor",
        "simulated",
        "--nodes",
        "1x8:H800",
        *common,
        command="server",
        data_dir=tmp_path / "simulated",
    )
    simulated_runs = _run_jobs(simulated)

    assert local_runs["ok"][:2] == ("succeeded", 0)
    assert local_runs["fails"][:2] == ("failed", 3)
    assert local_runs["cancelled"][0] == "cancelled"
    for name in JOBS:
        assert simulated_runs[name] == local_runs[name], name
