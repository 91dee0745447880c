"""Compute credits end to end: a real server, the ``mosu`` command, short jobs, a tiny
grant and a high rate (3600 credits per GPU-hour: one credit per GPU-second), one test
per out-of-credit policy, and 16 clients racing for a tenant with credits for 3 jobs."""

from __future__ import annotations

import json
import threading

from mosu.core.api import JobSpec
from tests.cli.test_platform_cli import cli_env, mosu, one_line_error  # noqa: F401
from tests.e2e.conftest import OPERATOR_TOKEN, make_server, wait_for  # noqa: F401

SERVER_ARGS = ("--gpus", "8", "--gpu-type", "H800", "--grace", "1", "--min-runtime", "0")
METER_ENV = {"MOSU_CREDITS_METER_S": "0.3"}


def _setup(make_server, cli_env, policy: str, guarantee: str = "H800=8", grant: str = "3"):  # noqa: F811
    server = make_server(*SERVER_ARGS, env=METER_ENV)
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}
    mosu("rates", "set", "H800=3600/h", env=op)
    created = mosu(
        "tenant", "create", "acme", "-g", guarantee, "--on-credits-exhausted", policy,
        "-o", "json", env=op,
    )  # fmt: skip
    acme = {**cli_env, "MOSU_TOKEN": json.loads(created.stdout)["token"]}
    mosu("credits", "grant", "acme", grant, "--expires", "2099-12-31", "--note", "seed", env=op)
    return server, op, acme


def _submit(tmp_path, env, name: str, text: str) -> int:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\n{text}")
    return int(mosu("job", "submit", str(spec), env=env).stdout.strip())


def _job(env, job_id: int) -> dict:
    return json.loads(mosu("job", "show", str(job_id), "-o", "json", env=env).stdout)["job"]


def _balance(env, tenant: str = "acme") -> dict:
    return json.loads(mosu("credits", "balance", tenant, "-o", "json", env=env).stdout)


def test_hold_lets_a_running_job_finish_and_holds_the_next(make_server, cli_env, tmp_path):  # noqa: F811
    _server, op, acme = _setup(make_server, cli_env, "hold")
    first = _submit(tmp_path, acme, "first", "gpus: 1\nestimate: 2s\ncommand: sleep 2\n")
    wait_for(lambda: _job(acme, first)["state"] == "succeeded", timeout=30, what="first done")
    second = _submit(tmp_path, acme, "second", "gpus: 1\nestimate: 2s\ncommand: sleep 2\n")
    held = wait_for(
        lambda: _job(acme, second)["pending_reason"] == "credits-exhausted",
        timeout=15,
        what="the second job held for credits",
    )
    assert held
    mine = _balance(acme)
    assert {"tenant", "balance", "granted"} <= set(mine)
    assert (mine["tenant"], mine["granted"]) == ("acme", 3.0)
    assert mine["balance"] < 2  # what is left does not cover the second job's 2 s
    csv_text = mosu("credits", "statement", "-o", "csv", env=acme).stdout
    assert csv_text.startswith(
        "tenant,kind,gpu_type,borrowed,gpu_hours,amount,note,model,prompt_tokens,completion_tokens\n"
    )
    assert "acme,charge,H800,no," in csv_text
    # More credits: the held job runs.
    mosu("credits", "grant", "acme", "100", env=op)
    wait_for(lambda: _job(acme, second)["state"] == "succeeded", timeout=30, what="second runs")
    # A tenant grants nothing and sees no one else.
    one_line_error(mosu("credits", "grant", "acme", "5", env=acme, ok=False), "operator")
    one_line_error(mosu("credits", "balance", "other", env=acme, ok=False), "no tenant")
    one_line_error(mosu("rates", "set", "H800=abc", env=op, ok=False), "rates")


def test_stop_stops_a_running_job_when_the_credits_run_out(make_server, cli_env, tmp_path):  # noqa: F811
    _server, _op, acme = _setup(make_server, cli_env, "stop")
    job = _submit(tmp_path, acme, "long", "gpus: 1\nestimate: 2s\ncommand: sleep 120\n")
    wait_for(
        lambda: _job(acme, job)["pending_reason"] == "credits-exhausted",
        timeout=30,
        what="the running job stopped and held",
    )
    states = [
        e["to_state"]
        for e in json.loads(mosu("job", "show", str(job), "-o", "json", env=acme).stdout)["events"]
        if e["kind"] == "state"
    ]
    assert states[:5] == ["pending", "starting", "running", "preempted", "pending"]
    assert _balance(acme)["exhausted"] is True


def test_best_effort_suspends_the_guarantee_until_credits_come_back(
    make_server,  # noqa: F811
    cli_env,  # noqa: F811
    tmp_path,
):
    _server, op, acme = _setup(make_server, cli_env, "best-effort")
    beta = {
        **cli_env,
        "MOSU_TOKEN": json.loads(
            mosu("tenant", "create", "beta", "-l", "H800=8", "-o", "json", env=op).stdout
        )["token"],
    }
    long = "gpus: 4\ncommand: sleep 120\n"
    mine = _submit(tmp_path, acme, "mine", long)
    wait_for(lambda: _job(acme, mine)["state"] == "running", timeout=30, what="acme runs")
    borrowed = _submit(tmp_path, beta, "borrowed", long)
    wait_for(lambda: _job(beta, borrowed)["state"] == "running", timeout=30, what="beta borrows")
    wait_for(lambda: _balance(acme)["exhausted"], timeout=30, what="acme out of credits")
    # Within acme's guarantee of 8, but the guarantee is suspended: beta keeps its GPUs.
    waiting = _submit(tmp_path, acme, "waiting", long)
    wait_for(
        lambda: _job(acme, waiting)["pending_reason"] not in (None, ""),
        timeout=15,
        what="a reason for the waiting job",
    )
    assert _job(acme, mine)["state"] == "running"  # it still runs, on capacity it holds
    assert _job(beta, borrowed)["state"] == "running"
    assert _job(beta, borrowed)["stop_requested"] is None
    # Credits again: the guarantee is back and beta's borrowed GPUs are reclaimed.
    mosu("credits", "grant", "acme", "1000000", env=op)
    wait_for(
        lambda: _job(acme, waiting)["state"] == "running",
        timeout=30,
        what="the guarantee reclaimed from beta",
    )
    assert _job(beta, borrowed)["state"] in ("pending", "preempted")
    for env, job_id in ((acme, mine), (acme, waiting), (beta, borrowed)):
        mosu("job", "cancel", str(job_id), env=env, ok=False)


def test_sixteen_clients_cannot_overspend_credits_for_three_jobs(make_server, cli_env, tmp_path):  # noqa: F811
    """Each job reserves its estimate (2 s of a GPU = 2 credits); 7 credits admit 3. The
    documented bound: the ledger goes below zero by at most what admitted jobs ran beyond
    their estimates."""
    server, op, _acme = _setup(make_server, cli_env, "hold", grant="7")
    spec = JobSpec.model_validate(
        {"name": "race", "gpus": 1, "estimate": "2s", "command": "sleep 2"}
    )
    ids: list[int] = []
    barrier = threading.Barrier(16)

    def one() -> None:
        with server.client() as c:
            barrier.wait(timeout=30)
            ids.append(c.submit(spec, tenant="acme").id)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 16

    def settled() -> bool:
        with server.client() as c:
            jobs = [c.get_job(i) for i in ids]
        done = [j for j in jobs if j.state.value == "succeeded"]
        held = [j for j in jobs if j.pending_reason == "credits-exhausted"]
        return len(done) == 3 and len(held) == 13

    wait_for(settled, timeout=60, what="three jobs done and thirteen held")
    with server.client() as c:
        started = [j for j in (c.get_job(i) for i in ids) if j.started_at is not None]
        ran_s = [(j.finished_at - j.started_at).total_seconds() for j in started]
    balance = _balance(op)
    overspend = max(0.0, -balance["balance"])
    beyond_estimates = sum(max(0.0, s - 2.0) for s in ran_s)
    assert len(started) == 3
    assert overspend <= beyond_estimates + 1e-6
