"""The scheduler out of the request path, with real processes: a server's scheduler runs
in a child process the server supervises; its API runs in that server's process or in
``--workers`` processes.

- a submission wakes the scheduler process across processes (the socket on SQLite,
  NOTIFY on PostgreSQL), not by polling: the poll interval and the tick are an hour;
- a scheduler process that dies is started again by its server;
- two servers on one PostgreSQL store: one scheduler process leads, the other stands by;
  no job ever starts twice; killing the leading server (``kill -9``) takes its scheduler
  process with it, and the other takes over;
- a worker killed in the middle of submissions loses no acknowledged submission and
  duplicates none (the client retries with the same idempotency key).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mosu.client import Client
from mosu.client.api import ServerUnreachable
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import Server, wait_for
from tests.pg import fresh_postgres_database, postgres_url

SIM = ("--executor", "simulated", "--grace", "0", "--min-runtime", "0")
NO_POLLING = {"MOSU_POLL_S": "3600", "MOSU_TICK_S": "3600"}


@pytest.fixture
def pg_database() -> Iterator[str]:
    with fresh_postgres_database(postgres_url(), "mosu_sched") as url:
        yield url


def _job(name: str, seconds: float, gpus: int = 8) -> JobSpec:
    return JobSpec(name=name, gpus=gpus, gpu_type="H800", command=["sleep", str(seconds)])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) is not running either.
    state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _leader_pid(url: str) -> int | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                text("SELECT value FROM scheduler_state WHERE name = 'leader'")
            ).scalar()
    finally:
        engine.dispose()
    return int(json.loads(value)["pid"]) if value else None


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_submission_wakes_the_scheduler_process_not_its_poll(
    make_server: Callable[..., Server], store: str, tmp_path: Path
) -> None:
    if store == "postgresql":
        with fresh_postgres_database(postgres_url(), "mosu_wake") as url:
            env = {**NO_POLLING, "MOSU_DATABASE_URL": url}
            server = make_server(*SIM, "--nodes", "2x8:H800", command="server", env=env)
            _starts_at_once(server)
            server.stop()
    else:
        server = make_server(*SIM, "--nodes", "2x8:H800", env=NO_POLLING)
        _starts_at_once(server)


def _starts_at_once(server: Server) -> None:
    with server.client() as op:
        op.create_tenant("a", {"H800": QuotaSpec(guaranteed=16)})
        wait_for(lambda: len(op.list_nodes()) == 2, timeout=20, what="the simulated nodes")
        for k in range(2):  # the second proves the first wake was not the only one
            began = time.monotonic()
            job = op.submit(_job(f"j{k}", 600), tenant="a")
            wait_for(
                lambda job=job: op.get_job(job.id).state == "running",
                timeout=15,
                what=f"job {k} to start (woken, with an hour's poll interval)",
                every=0.05,
            )
            assert time.monotonic() - began < 15


def test_two_servers_one_scheduler_schedules_and_a_kill_takes_its_process_along(
    make_server: Callable[..., Server], pg_database: str, tmp_path: Path
) -> None:
    env = {"MOSU_DATABASE_URL": pg_database, "MOSU_TICK_S": "0.5"}
    nodes = ("--nodes", "4x8:H800")
    a = make_server(*SIM, *nodes, command="server", env=env, data_dir=tmp_path / "data-a")
    b = make_server(*SIM, *nodes, command="server", env=env)
    clients = {"a": a.client(), "b": b.client()}
    roles: list[tuple[str, str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                pair = (clients["a"].health()["scheduler"], clients["b"].health()["scheduler"])
            except ServerUnreachable:
                pair = ("gone", clients["b"].health()["scheduler"])
            roles.append(pair)
            time.sleep(0.1)

    op = clients["a"]
    op.create_tenant("t", {"H800": QuotaSpec(guaranteed=32)})
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        first = [op.submit(_job(f"a{k}", 0.5), tenant="t").id for k in range(12)]
        wait_for(
            lambda: all(op.get_job(j).state == "succeeded" for j in first),
            timeout=60,
            what="the first jobs to finish",
        )
        leader = a if roles[-1][0] == "leader" else b
        standby = b if leader is a else a
        scheduler_pid = _leader_pid(pg_database)
        assert scheduler_pid is not None and scheduler_pid in _children(leader.proc.pid)
        leader.kill9()
        # The kernel ends the scheduler process with its server: nothing keeps the lease.
        wait_for(lambda: not _alive(scheduler_pid), timeout=10, what="its scheduler to end")
        with standby.client() as c:
            wait_for(lambda: c.health()["scheduler"] == "leader", timeout=30, what="a takeover")
            second = [c.submit(_job(f"b{k}", 0.5), tenant="t").id for k in range(8)]
            wait_for(
                lambda: all(c.get_job(j).state == "succeeded" for j in second),
                timeout=60,
                what="the jobs after the takeover",
            )
            for job_id in first + second:
                states = [e.to_state for e in c.job_events(job_id) if e.kind == "state"]
                assert states.count("starting") == c.get_job(job_id).attempts == 1, states
    finally:
        stop.set()
        watcher.join(timeout=5)
        for c in clients.values():
            c.close()
    both = [pair for pair in roles if pair == ("leader", "leader")]
    assert not both, f"both servers led at once in {len(both)} of {len(roles)} samples"
    assert ("leader", "standby") in roles or ("standby", "leader") in roles


def test_a_worker_killed_mid_request_loses_no_acknowledged_submission(
    make_server: Callable[..., Server], pg_database: str
) -> None:
    env = {"MOSU_DATABASE_URL": pg_database}
    server = make_server(*SIM, "--nodes", "2x8:H800", "--workers", "2", command="server", env=env)
    with server.client() as op:
        token = op.create_tenant("t", {"H800": QuotaSpec(guaranteed=16)}).token
    wait_for(lambda: _leader_pid(pg_database), timeout=20, what="the scheduler's heartbeat")
    scheduler_pid = _leader_pid(pg_database)

    def workers() -> list[int]:
        return [
            pid
            for pid in _children(server.proc.pid)
            if pid != scheduler_pid and "spawn_main" in _cmdline(pid)
        ]

    wait_for(lambda: len(workers()) == 2, timeout=20, what="two API workers")
    victim = workers()[0]
    acknowledged: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    until = time.monotonic() + 6.0

    def submitter(n: int) -> None:
        with Client(server.url, token, timeout=10) as c:
            k = 0
            while time.monotonic() < until:
                try:
                    job = c.submit(_job(f"s{n}-{k}", 3600))
                except BaseException as exc:  # collected and asserted on
                    failures.append(exc)
                    return
                with lock:
                    acknowledged.append(job.id)
                k += 1

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    with lock:
        before_kill = len(acknowledged)
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert before_kill > 0 and len(acknowledged) > before_kill  # load on both sides of it
    assert len(set(acknowledged)) == len(acknowledged)
    engine = create_engine(pg_database)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT id FROM jobs WHERE tenant = 't'")).scalars())
    finally:
        engine.dispose()
    # Every answered submission is stored, and nothing was stored twice by a retry.
    assert stored == set(acknowledged)
    wait_for(lambda: len(workers()) == 2, timeout=30, what="the killed worker replaced")
    assert victim not in workers()


def _scheduler_children(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        try:
            if (Path("/proc") / str(child) / "comm").read_text().strip() == "mosu-scheduler":
                out.append(child)
        except OSError:
            continue
    return out


def test_a_scheduler_process_that_dies_is_started_again(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(*SIM, "--nodes", "2x8:H800")
    assert server.proc is not None
    first = wait_for(
        lambda: _scheduler_children(server.proc.pid), timeout=20, what="the scheduler process"
    )
    assert len(first) == 1
    os.kill(first[0], signal.SIGKILL)
    again = wait_for(
        lambda: [p for p in _scheduler_children(server.proc.pid) if p != first[0]],
        timeout=30,
        what="a new scheduler process",
    )
    assert len(again) == 1
    with server.client() as op:
        op.create_tenant("a", {"H800": QuotaSpec(guaranteed=16)})
        job = op.submit(_job("after", 600), tenant="a")
        wait_for(
            lambda: op.get_job(job.id).state == "running",
            timeout=30,
            what="a job started by the new scheduler process",
        )
        assert op.health()["scheduler"] == "leader"
