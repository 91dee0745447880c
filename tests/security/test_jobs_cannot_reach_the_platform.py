"""Hostile jobs against a real platform: ``mosu up`` on SQLite and ``mosu server`` on
PostgreSQL, each with real tenants, real supervisors and real processes.

A tenant's job tries what a resident company could try from inside its job: read the
operator's client config, the store, another tenant's logs and home, the server's
environment, and signal the server. Every probe must fail, the secrets (the operator's
token, the other tenant's token, the database URL, the other tenant's job env) must be
in no log but their owner's, and the replica's environment must hold exactly the
documented variables. Processes a job hides with ``setsid`` and a double fork must be
gone after every kind of stop: cancel, preemption, ``max_runtime`` and a drain.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mosu.agent import procfs
from mosu.agent.replica_env import contract_keys
from mosu.agent.sandbox import USERS_HOME_ROOT
from mosu.agent.unix_users import user_name
from mosu.cli import config
from mosu.client import Client
from mosu.core.api import JobSpec, JobState, QuotaSpec
from tests.e2e.conftest import OPERATOR_TOKEN, Server, wait_for
from tests.jobs import JOB_PYTHON, shared_copy
from tests.pg import fresh_postgres_database, postgres_url

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tenants' Unix users need root")

PROBE = Path(__file__).with_name("probe.py")
BETA_SECRET = "beta-secret-value-7f3a"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NODE_ARGS = ("--gpus", "8", "--gpu-type", "H800", "--node-name", "n0")


@pytest.fixture(params=BACKENDS)
def platform(
    request: pytest.FixtureRequest, make_server: Callable[..., Server], tmp_path: Path
) -> Iterator[tuple[Server, str | None]]:
    """A server with the operator's token in its environment (as ``MOSU_TOKEN`` too) and,
    on PostgreSQL, the database URL; returns the server and that URL."""
    env = {"MOSU_TOKEN": OPERATOR_TOKEN}
    args = (*NODE_ARGS, "--grace", "1", "--min-runtime", "0")
    if request.param == "sqlite":
        yield make_server(*args, env=env), None
        return
    with fresh_postgres_database(postgres_url(), "mosu_security") as url:
        env["MOSU_DATABASE_URL"] = url  # never on the command line: /proc/PID/cmdline is public
        server = make_server(*args, command="server", env=env)
        # The operator's saved config, as `mosu up` would have left it.
        os.environ["MOSU_CONFIG"] = str(tmp_path / "client.json")
        try:
            config.save(server.url, OPERATOR_TOKEN)
        finally:
            del os.environ["MOSU_CONFIG"]
        yield server, url
        server.stop()


def _postgres_files(url: str) -> str:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW data_directory")).scalar_one())
    finally:
        engine.dispose()


def _run(client: Client, spec: JobSpec, timeout: float = 60) -> tuple[int, str]:
    job = client.submit(spec)
    done = wait_for(
        lambda: (j := client.get_job(job.id)).state.finished and j,
        timeout=timeout,
        what=f"job {spec.name} to end",
    )
    assert done.state == JobState.SUCCEEDED, done.message
    return job.id, client.logs(job.id, replica=0).data


def test_a_job_reaches_neither_the_platform_nor_another_tenant(
    platform: tuple[Server, str | None], tmp_path: Path, work: Path
) -> None:
    server, database_url = platform
    assert server.proc is not None
    with server.client() as op:
        acme = op.create_tenant("acme", {"H800": QuotaSpec(guaranteed=4)})
        beta = op.create_tenant("beta", {"H800": QuotaSpec(guaranteed=4)})
    with server.client(beta.token) as cb:
        beta_job, beta_log = _run(
            cb,
            JobSpec(
                name="victim",
                command=["/bin/sh", "-c", "echo $BETA_SECRET; touch $HOME/diary"],
                env={"BETA_SECRET": BETA_SECRET},
            ),
        )
    assert BETA_SECRET in beta_log  # a tenant's own log is its own
    data = server.data_dir
    targets = {
        "read": {
            "the client config": str(tmp_path / "client.json"),
            "the other tenant's log": str(data / "logs" / str(beta_job) / "replica-0.log"),
            "the other tenant's home": str(USERS_HOME_ROOT / user_name("beta") / "diary"),
            "the store": (
                str(data / "mosu.db")
                if database_url is None
                else f"{_postgres_files(database_url)}/global/pg_control"
            ),
        },
        "list": {
            "the data directory": str(data),
            "the other tenant's log directory": str(data / "logs" / str(beta_job)),
            "the other tenant's home": str(USERS_HOME_ROOT / user_name("beta")),
        },
        "server_pid": server.proc.pid,
    }
    probe = shared_copy(PROBE, work)
    with server.client(acme.token) as ca:
        _job, log = _run(
            ca, JobSpec(name="probe", command=[JOB_PYTHON, str(probe), json.dumps(targets)])
        )
    seen = json.loads(next(line for line in log.splitlines() if line.startswith("{")))
    probes = {k: v for k, v in seen.items() if isinstance(v, dict) and "ok" in v}
    assert len(probes) == 10
    got_through = {k: v["saw"] for k, v in probes.items() if v["ok"]}
    assert got_through == {}, f"a job got through: {got_through}"
    print("\nprobes:", json.dumps({k: v["saw"] for k, v in probes.items()}, indent=1))

    # The replica ran as its tenant's own user with exactly the documented environment.
    env = seen["env"]
    assert seen["uid"] not in (0, os.getuid())
    assert set(env) == (contract_keys("nvidia") - {"MOSU_GPU_FRACTION"}) | {"PATH", "LANG"}
    assert env["HOME"] == str(USERS_HOME_ROOT / user_name("acme"))
    with server.client() as op:
        assert op.health()["status"] == "ok", "the server was not touched"

    # No secret in any log but its owner's: every job log, as stored and as served.
    secrets = {"the operator's token": OPERATOR_TOKEN, "beta's token": beta.token}
    if database_url is not None:
        secrets["the database URL"] = database_url
    logs = {p: p.read_text(errors="replace") for p in (data / "logs").rglob("*.log")}
    assert len(logs) >= 2
    for path, text_ in logs.items():
        for what, secret in secrets.items():
            assert secret not in text_, f"{what} leaked into {path}"
        if f"/logs/{beta_job}/" not in str(path):
            assert BETA_SECRET not in text_, f"beta's job env leaked into {path}"


ESCAPE = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.run(["setsid", "/bin/sh", "-c",
                    "env -i sleep 457 </dev/null >/dev/null 2>&1 & echo $! > " + sys.argv[1]])
    print("escaped", flush=True)
    time.sleep(300)
    """
)


def _escaping_job(name: str, work: Path, **spec: object) -> tuple[JobSpec, Path]:
    pid_file = work / f"escaped-{name}"
    command = [JOB_PYTHON, "-c", ESCAPE, str(pid_file)]
    return JobSpec(name=name, command=command, **spec), pid_file  # type: ignore[arg-type]


def _escaped(pid_file: Path) -> tuple[int, int | None]:
    text_ = wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip(),
        timeout=30,
        what="the escape to start",
    )
    pid = int(text_)
    ticks = procfs.start_ticks(pid)
    assert procfs.is_running(pid, ticks)
    return pid, ticks


def test_an_escaped_process_is_ended_by_every_kind_of_stop(
    make_server: Callable[..., Server], work: Path
) -> None:
    server = make_server(*NODE_ARGS, "--grace", "1", "--min-runtime", "0")
    with server.client() as op:
        a = op.create_tenant("a", {"H800": QuotaSpec(guaranteed=4)})
        b = op.create_tenant("b", {"H800": QuotaSpec(guaranteed=4, limit=8)})
    ended: dict[str, float] = {}
    with server.client(a.token) as ca, server.client(b.token) as cb, server.client() as op:
        # 1. cancel
        spec, pid_file = _escaping_job("cancelled", work, gpus=1)
        job = ca.submit(spec)
        pid, ticks = _escaped(pid_file)
        ca.cancel(job.id)
        wait_for(lambda: ca.get_job(job.id).state == JobState.CANCELLED, timeout=30, what="end")
        ended["cancel"] = procfs.is_running(pid, ticks)

        # 2. max_runtime
        spec, pid_file = _escaping_job("too-long", work, gpus=1, max_runtime=2)
        job = ca.submit(spec)
        pid, ticks = _escaped(pid_file)
        wait_for(lambda: ca.get_job(job.id).state == JobState.FAILED, timeout=30, what="end")
        ended["max_runtime"] = procfs.is_running(pid, ticks)

        # 3. preemption: b borrows a's idle guarantee, a takes it back.
        spec, pid_file = _escaping_job("borrower", work, gpus=8)
        big = cb.submit(spec)
        pid, ticks = _escaped(pid_file)
        owner, _ = _escaping_job("owner", work, gpus=4)
        small = ca.submit(owner)
        wait_for(
            lambda: cb.get_job(big.id).state == JobState.PENDING,
            timeout=30,
            what="the borrower preempted",
        )
        ended["preemption"] = procfs.is_running(pid, ticks)
        ca.cancel(small.id)
        cb.cancel(big.id)
        wait_for(lambda: cb.get_job(big.id).state.finished, timeout=30, what="the borrower")
        wait_for(lambda: ca.get_job(small.id).state.finished, timeout=30, what="the owner")

        # 4. a drain that stops the node's work
        spec, pid_file = _escaping_job("drained", work, gpus=1)
        job = ca.submit(spec)
        pid, ticks = _escaped(pid_file)
        op.drain_node("n0", stop_jobs=True)
        wait_for(lambda: ca.get_job(job.id).state == JobState.PENDING, timeout=30, what="requeued")
        ended["drain"] = procfs.is_running(pid, ticks)
        ca.cancel(job.id)
    # Checked the moment each job's GPUs came free: the escape was gone already.
    assert ended == dict.fromkeys(ended, False), f"escapes still running: {ended}"
    assert len(ended) == 4


def test_the_data_directory_logs_and_config_are_private_whatever_the_umask(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    # A umask that would leave everything open to every user.
    server = make_server(*NODE_ARGS, data_dir=tmp_path / "fresh" / "data", umask=0)
    with server.client() as op:
        t = op.create_tenant("t", {"H800": QuotaSpec(guaranteed=1)})
    with server.client(t.token) as c:
        _run(c, JobSpec(name="hello", command=["echo", "hello"]))
    server.stop()
    data = server.data_dir
    # The server made "fresh" too, on its way to the data directory.
    dirs = [data.parent, data, *[p for p in data.rglob("*") if p.is_dir()]]
    files = [tmp_path / "client.json", *[p for p in data.rglob("*") if p.is_file()]]
    assert {p.name for p in files} >= {"client.json", "mosu.db", "replica-0.log", "exit.json"}
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs + files}
    assert {p: m for p, m in modes.items() if int(m, 8) & 0o077} == {}, "open to other users"
