"""The scheduler lease: one leader among processes, quick takeover, deposed leaders fenced.

PostgreSQL cases need ``MOSU_TEST_POSTGRES_URL``; each uses a lease name of its own so
that they never meet another test's (or a real server's) lease on the same database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mosu.service.leader import (
    AlwaysLeader,
    FileLease,
    LeadershipLost,
    PostgresLease,
    lease_for_url,
)
from tests.e2e.conftest import free_port, wait_for
from tests.jobs import JOB_PYTHON, shared_copy, shared_dir, stop_leftover_replicas
from tests.pg import fresh_postgres_database, postgres_url

TAKEOVER_LIMIT_S = 10.0

HOLDER = """
import sys, time
from pathlib import Path
from mosu.service.leader import FileLease, PostgresLease
kind, where, name = sys.argv[1:4]
lease = PostgresLease(where, name=name) if kind == "postgres" else FileLease(Path(where))
print("leader" if lease.acquire() else "standby", flush=True)
time.sleep(60)
"""


@pytest.fixture
def pg_url() -> str:
    return postgres_url()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def name() -> str:
    return f"mosu-test-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def _holder(kind: str, where: str, name: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, where, name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def _first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=20)
    if not line:
        raise AssertionError("the lease holder process said nothing within 20 s")
    return line[0].strip()


def _takeover_after_sigkill(proc: subprocess.Popen[str], acquire: object) -> float:
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < TAKEOVER_LIMIT_S:
        if acquire():  # type: ignore[operator]
            return time.monotonic() - killed
        time.sleep(0.2)
    raise AssertionError(f"no takeover within {TAKEOVER_LIMIT_S} s of SIGKILL")


@pytest.mark.postgres
def test_only_one_process_holds_the_postgres_lease_and_another_takes_over_after_sigkill(
    pg_url: str, name: str
) -> None:
    standby = PostgresLease(pg_url, name=name)
    try:
        with _holder("postgres", pg_url, name) as holder:
            assert _first_line(holder) == "leader"
            assert standby.acquire() is False
            assert standby.is_leader is False

            took = _takeover_after_sigkill(holder, standby.acquire)

            assert standby.is_leader is True
            assert standby.check() is True
            assert took < TAKEOVER_LIMIT_S
    finally:
        standby.release()


@pytest.mark.postgres
def test_second_lease_in_another_process_stays_standby_while_the_first_lives(
    pg_url: str, name: str
) -> None:
    first = PostgresLease(pg_url, name=name)
    try:
        assert first.acquire() is True
        with _holder("postgres", pg_url, name) as other:
            assert _first_line(other) == "standby"
        assert first.check() is True
    finally:
        first.release()


@pytest.mark.postgres
def test_released_lease_is_free_at_once(pg_url: str, name: str) -> None:
    a, b = PostgresLease(pg_url, name=name), PostgresLease(pg_url, name=name)
    try:
        assert (a.acquire(), b.acquire()) == (True, False)
        a.release()
        assert b.acquire() is True
        assert a.acquire() is False
    finally:
        a.release()
        b.release()


@pytest.mark.postgres
def test_deposed_leader_cannot_apply_decisions(pg_engine: Engine, pg_url: str, name: str) -> None:
    old, new = PostgresLease(pg_url, name=name), PostgresLease(pg_url, name=name)
    try:
        assert old.acquire() is True
        with pg_engine.begin() as conn:
            old.fence(conn)  # still the leader: passes

        # The old leader's session dies (a network cut) but its process lives on.
        with pg_engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old.backend_pid})
        deadline = time.monotonic() + TAKEOVER_LIMIT_S
        while not new.acquire():
            assert time.monotonic() < deadline, "the new leader never acquired"
            time.sleep(0.1)

        with pg_engine.begin() as conn, pytest.raises(LeadershipLost):
            old.fence(conn)
        assert old.is_leader is False
        assert old.check() is False
    finally:
        old.release()
        new.release()


@pytest.mark.postgres
def test_new_leader_waits_for_the_old_leaders_apply_in_flight(
    pg_engine: Engine, pg_url: str, name: str
) -> None:
    old, new = PostgresLease(pg_url, name=name), PostgresLease(pg_url, name=name)
    order: list[str] = []
    try:
        assert old.acquire() is True
        with pg_engine.connect() as apply:
            tx = apply.begin()
            old.fence(apply)  # the apply transaction is now in flight
            old.release()  # the old leader steps down mid-apply
            acquired = threading.Event()

            def take_over() -> None:
                if new.acquire():
                    order.append("new leader")
                    acquired.set()

            t = threading.Thread(target=take_over)
            t.start()
            time.sleep(1.0)
            assert not acquired.is_set(), "took over while the old apply was in flight"
            order.append("old apply committed")
            tx.commit()
            t.join(timeout=TAKEOVER_LIMIT_S)
        assert order == ["old apply committed", "new leader"]
    finally:
        old.release()
        new.release()


def test_file_lease_is_exclusive_between_processes_and_freed_by_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "mosu.db.leader"
    standby = FileLease(path)
    try:
        with _holder("file", str(path), "unused") as holder:
            assert _first_line(holder) == "leader"
            assert standby.acquire() is False
            with pytest.raises(LeadershipLost):
                standby.fence(None)  # type: ignore[arg-type]

            took = _takeover_after_sigkill(holder, standby.acquire)

            assert standby.is_leader is True
            assert took < TAKEOVER_LIMIT_S
    finally:
        standby.release()


@pytest.mark.parametrize(
    ("url", "want_type"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", PostgresLease),
        ("postgresql+psycopg://postgres@db/mosu", PostgresLease),
        ("sqlite:////var/lib/mosu/mosu.db", FileLease),
        ("sqlite://", AlwaysLeader),
        ("sqlite:///:memory:", AlwaysLeader),
    ],
)
def test_lease_kind_follows_the_database_url(url: str, want_type: type) -> None:
    lease = lease_for_url(url)
    assert type(lease) is want_type
    if isinstance(lease, FileLease):
        assert lease.path == Path("/var/lib/mosu/mosu.db.leader")


# --- two real servers on one PostgreSQL database ---------------------------------------

WORKER = Path(__file__).resolve().parents[1] / "e2e" / "worker.py"
LEADER_LINE = "acquired the scheduler lease"


@pytest.fixture
def fresh_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres_database(pg_url, "mosu_lease") as url:
        yield url


@pytest.mark.postgres
def test_two_servers_share_a_database_one_schedules_and_the_other_takes_over_after_sigkill(
    fresh_database: str, tmp_path: Path
) -> None:
    from mosu.client import Client, ServerUnreachable

    token = "mosu_op_lease-test-operator-token"
    servers: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    clients: list[Client] = []

    def start(name: str) -> Client:
        port = free_port()
        log = tmp_path / f"server-{name}.log"
        env = dict(os.environ, MOSU_OPERATOR_TOKEN=token, MOSU_POLL_S="0.05", MOSU_TICK_S="0.5")
        cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--database-url", fresh_database]
        cmd += ["--data-dir", str(tmp_path / name), "--port", str(port), "--gpus", "2"]
        cmd += ["--gpu-type", "H800", "--node-name", "n0", "--grace", "2", "--min-runtime", "0"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        servers[name] = (proc, port, log)
        client = Client(f"http://127.0.0.1:{port}", token, timeout=10)
        clients.append(client)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server {name} exited:\n{log.read_text()}")
            try:
                return client.health()["status"] == "ok"
            except ServerUnreachable:
                return False

        wait_for(healthy, timeout=30, what=f"server {name} to answer")
        return client

    def leads(name: str) -> bool:
        return LEADER_LINE in servers[name][2].read_text()

    with shared_dir() as out:
        worker = shared_copy(WORKER, out)
        try:
            _adopted_across_failover(start, leads, servers, worker, out)
        finally:
            (out / "go").write_text("")
            for client in clients:
                client.close()
            for proc, _port, _log in servers.values():
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
            stop_leftover_replicas(tmp_path)


def _adopted_across_failover(start, leads, servers, worker: Path, out: Path) -> None:
    from mosu.client import Client
    from mosu.core.api import JobSpec, JobState, QuotaSpec

    a = start("a")
    wait_for(lambda: leads("a"), timeout=10, what="server a to lead")
    b = start("b")
    time.sleep(3)  # a standby retries every 2 s: it had its chances
    assert not leads("b")
    assert (a.health()["scheduler"], b.health()["scheduler"]) == ("leader", "standby")

    # b serves the API; a schedules what b accepted.
    tenant = b.create_tenant("t", {"H800": QuotaSpec(guaranteed=2)})
    with Client(b.url, tenant.token, timeout=10) as tb:
        command = [JOB_PYTHON, str(worker), str(out), "go"]
        job = tb.submit(JobSpec(name="w", gpus=1, command=command))
        wait_for(
            lambda: tb.get_job(job.id).state == JobState.RUNNING,
            timeout=20,
            what="the job to run",
        )
        first = out / f"start-{job.id}-1-0.json"
        wait_for(first.exists, timeout=20, what="attempt 1's process")
        pid = json.loads(first.read_text())["pid"]

        servers["a"][0].kill()
        killed = time.monotonic()
        wait_for(lambda: leads("b"), timeout=TAKEOVER_LIMIT_S, what="server b to take over")
        took = time.monotonic() - killed
        # The API reads the scheduler's heartbeat through a short cache (0.5 s).
        wait_for(
            lambda: b.health()["scheduler"] == "leader",
            timeout=3,
            what="b's API to report its scheduler as leader",
        )
        print(f"takeover after SIGKILL of the leader: {took:.1f} s")

        # The new leader adopts what the dead one left running: same attempt, same pid.
        time.sleep(2)
        assert Path(f"/proc/{pid}").exists()
        assert not (out / f"start-{job.id}-2-0.json").exists()
        assert not (out / f"terminated-{job.id}-1-0").exists()
        (out / "go").write_text("")
        wait_for(
            lambda: tb.get_job(job.id).state == JobState.SUCCEEDED,
            timeout=30,
            what="the job to succeed",
        )
        assert tb.get_job(job.id).attempts == 1


@pytest.mark.postgres
def test_leader_whose_session_dies_leaves_its_work_and_one_server_leads_again(
    fresh_database: str, tmp_path: Path
) -> None:
    from mosu.service.platform import Platform
    from tests.service.conftest import FakeExecutor, open_platform

    class RecordingExecutor(FakeExecutor):
        shutdowns = 0

        def shutdown(self, grace_s: float) -> None:
            self.shutdowns += 1

    def platform(name: str, executor: FakeExecutor) -> Platform:
        return open_platform(tmp_path / name, fresh_database, executor, poll_s=0.05, tick_s=0.2)

    first_executor = RecordingExecutor()
    first = platform("a", first_executor)
    second = platform("b", FakeExecutor())
    try:
        first.start_scheduler()
        second.start_scheduler()
        assert (first.loop.leading, second.loop.leading) == (True, False)
        lease = first.loop.lease
        assert isinstance(lease, PostgresLease)

        engine = create_engine(fresh_database)
        with engine.begin() as conn:  # the leader's database session is cut
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lease.backend_pid})
        engine.dispose()

        wait_for(
            lambda: first_executor.detached > 0,
            timeout=10,
            what="the old leader to leave its work to the next one",
        )
        assert first_executor.shutdowns == 0, "a deposed leader must not stop running work"
        leaders = wait_for(
            lambda: [p for p in (first, second) if p.loop.leading],
            timeout=TAKEOVER_LIMIT_S,
            what="one server to lead again",
        )
        assert len(leaders) == 1
    finally:
        first.close()
        second.close()
