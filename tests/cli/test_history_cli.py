"""``mosu history export`` on a real ``mosu up``: jobs really run, are exported in the
native trace format and replayed unchanged by ``mosu sim replay``."""

from __future__ import annotations

import json

from mosu.core.api import JobSpec
from mosu.traces import native
from mosu.traces.schema import Ended
from tests.cli.test_platform_cli import cli_env, mosu, one_line_error  # noqa: F401
from tests.e2e.conftest import OPERATOR_TOKEN, make_server, wait_for  # noqa: F401

TIMER_S = 1.0
"""How much longer than its command a replica's recorded run can be: the allocation is
stamped before the supervisor starts the command, and its exit is seen on the next
poll of the executor (0.05 s here)."""


def test_export_then_replay_round_trip(make_server, cli_env, tmp_path):  # noqa: F811
    server = make_server("--gpus", "4", "--gpu-type", "H800", "--grace", "1", "--min-runtime", "0")
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}
    with server.client() as c:
        c.create_tenant("acme", {"H800": {"guaranteed": 2}})
        c.create_tenant("beta", {"H800": {"guaranteed": 2, "limit": 4}}, weight=2)
        sleeps: dict[int, float] = {}

        def submit(tenant: str, name: str, gpus: float, command: list[str]) -> int:
            spec = JobSpec(name=name, gpus=gpus, command=command, estimate="1m")
            return c.submit(spec, tenant=tenant).id

        for tenant, gpus, sleep in [
            ("acme", 2, 1.0),
            ("beta", 4, 1.5),
            ("acme", 1, 0.5),
            ("beta", 0.5, 0.2),
            ("acme", 1, 0.8),
        ]:
            sleeps[submit(tenant, f"s{sleep}", gpus, ["sleep", str(sleep)])] = sleep
        failing = submit("acme", "fails", 1, ["sh", "-c", "sleep 0.3; exit 3"])
        wait_for(
            lambda: (
                all(c.get_job(j).state == "succeeded" for j in sleeps)
                and c.get_job(failing).state == "failed"
            ),
            timeout=60,
            what="the short jobs to end",
        )
        cancelled = submit("beta", "cancelled", 1, ["sleep", "60"])
        wait_for(lambda: c.get_job(cancelled).state == "running", timeout=30, what="a start")
        c.cancel(cancelled)
        wait_for(lambda: c.get_job(cancelled).state == "cancelled", timeout=30, what="cancel")
        running = submit("acme", "still-running", 1, ["sleep", "60"])
        wait_for(lambda: c.get_job(running).state == "running", timeout=30, what="a start")
        real = {j: c.get_job(j) for j in [*sleeps, failing, cancelled, running]}

        out = tmp_path / "history"
        said = mosu("history", "export", "--since", "1h", "--out", str(out), env=op).stdout
        assert said.startswith("8 jobs, 6 ended by themselves, 1 cancelled, 1 still running")
        c.cancel(running)

    jobs = {j.id: j for j in native.load_jobs(out / "jobs.csv")}
    assert set(jobs) == {str(j) for j in real}
    meta = json.loads((out / "export.json").read_text())
    assert meta["counts"] == {"jobs": 8, "exit": 6, "cancelled": 1, "running": 1}
    origin = meta["origin"]
    for job_id, sleep in sleeps.items():
        job = jobs[str(job_id)]
        assert job.history is not None and job.history.ended is Ended.EXIT
        assert len(job.history.attempts_s) == 1
        assert sleep <= job.duration_s <= sleep + TIMER_S, (job_id, sleep, job.duration_s)
        assert job.history.start_s is not None
        assert abs(origin + job.history.start_s - real[job_id].started_at.timestamp()) < 1e-3
        assert abs(origin + job.submit_s - real[job_id].submitted_at.timestamp()) < 1e-3
    assert jobs[str(failing)].history.ended is Ended.EXIT
    assert 0.3 <= jobs[str(failing)].duration_s <= 0.3 + TIMER_S
    assert jobs[str(cancelled)].history.ended is Ended.CANCELLED
    assert jobs[str(running)].history.ended is Ended.RUNNING
    assert jobs[str(next(iter(sleeps)))].shape.gpus == 2
    half = next(j for j, s in sleeps.items() if s == 0.2)
    assert jobs[str(half)].shape.gpu_milli == 500
    tenants = {t.name: t for t in native.load_tenants(out / "tenants.csv")}
    assert tenants["beta"].weight == 2
    assert tenants["beta"].quota("H800").limit_milli == 4000
    (node,) = native.load_nodes(out / "nodes.csv")
    assert (node.gpu_type, node.gpus) == ("H800", 4)

    replayed = tmp_path / "replayed"
    mosu(
        "sim",
        "replay",
        "--trace",
        f"mosu:{out}/jobs.csv",
        "--tenants",
        str(out / "tenants.csv"),
        "--nodes",
        str(out / "nodes.csv"),
        "--out",
        str(replayed),
        env=cli_env,
    )
    summary = json.loads((replayed / "replay.json").read_text())["policies"]["mosu"]
    assert summary["jobs"] == 8
    assert summary["unfinished"] == 0
    assert {t: s["jobs"] for t, s in summary["tenants"].items()} == {"acme": 5, "beta": 3}


def test_a_tenant_cannot_export_and_bad_times_are_one_line(make_server, cli_env):  # noqa: F811
    server = make_server("--gpus", "1", "--gpu-type", "H800")
    cli_env["MOSU_URL"] = server.url
    with server.client() as c:
        token = c.create_tenant("acme", {"H800": {"guaranteed": 1}}).token
    tenant = {**cli_env, "MOSU_TOKEN": token}
    one_line_error(
        mosu("history", "export", "--out", "x", env=tenant, ok=False),
        "only the operator may export",
    )
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}
    one_line_error(
        mosu("history", "export", "--since", "yesterday", "--out", "x", env=op, ok=False),
        "bad time 'yesterday'",
    )
    one_line_error(
        mosu("history", "export", "--since", "1d", "--until", "2d", "--out", "x", env=op, ok=False),
        "since: must be before --until",
    )
