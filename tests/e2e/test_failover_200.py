"""Scheduler failover under load: two ``mosu server`` processes share one PostgreSQL
database; the scheduling leader is killed with SIGKILL, three times, while 200 short
jobs flow through (each killed server comes back as the standby).

What must hold, checked afterwards from the database's history and, independently, from
what the job processes themselves recorded:

- the standby takes the scheduler lease within ``TAKEOVER_LIMIT_S`` of each kill;
- every submitted job is there and succeeded, none lost or stuck;
- no running job is restarted: the new leader adopts what the dead one left running,
  and every job's process ran exactly once (an attempt is requeued only if it never
  started); no process of a job ever ran while another process of that job was alive
  (each holds an exclusive ``flock`` on a file of its job for its whole life);
- no GPU is ever held by two jobs: replaying starts and ends in history order over the
  allocation rows, and, independently, each process ``flock``s one file per GPU it was
  given for its whole life.

History order is event id order: a start's transaction reads the live allocations after
every release it can see has committed, so its event rows get later ids than theirs.
Start events carry neither the node, the GPU indices nor the attempt number; the k-th
``starting`` event of a job is its attempt k, whose GPUs are its allocation rows.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mosu.client import Client, ServerUnreachable
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import OPERATOR_TOKEN, free_port, wait_for
from tests.jobs import JOB_PYTHON, stop_leftover_replicas
from tests.pg import fresh_postgres_database, postgres_url

TAKEOVER_LIMIT_S = 10.0
JOBS = 200
KILLS = 3
GPUS = 8
NODE = "n0"
LEADER_LINE = "acquired the scheduler lease"
ALL_DONE_TIMEOUT_S = 100.0

# Each tenant may use exactly what it is promised, so the only requeues are the failover's.
TENANTS = {"t0": (4, (1, 2, 4)), "t1": (2, (1, 2)), "t2": (2, (1, 1, 2))}
"""tenant -> (guaranteed GPUs, GPUs per job drawn from)."""

# Runs with ``python -S -c``: stdlib only, quick to start.
JOB_CODE = """
import fcntl, json, os, signal, sys, time
out, nap = sys.argv[1], float(sys.argv[2])
job, attempt = os.environ["MOSU_JOB_ID"], os.environ["MOSU_ATTEMPT"]
gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
held = []
def grab(name):
    f = open(os.path.join(out, name), "a")
    held.append(f)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
alone = grab(f"job-{job}.lock")
gpus_free = [grab(f"gpu-{g}.lock") for g in gpus]
def record(kind, **extra):
    with open(os.path.join(out, f"{kind}-{job}-{attempt}.json"), "w") as f:
        json.dump(dict(pid=os.getpid(), at=time.time(), **extra), f)
def on_term(*_):
    record("stop", how="sigterm")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
record("start", alone=alone, gpus=gpus, gpus_free=gpus_free)
time.sleep(nap)
record("stop", how="done")
"""


@pytest.fixture
def fresh_database() -> Iterator[str]:
    with fresh_postgres_database(postgres_url(), "mosu_failover") as url:
        yield url


@dataclass
class ServerProc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def leads(self) -> bool:
        return LEADER_LINE in self.log.read_text(errors="replace")

    def lead_logged_at(self) -> float:
        """When this server logged taking the lease (epoch seconds; the log's local time)."""
        for line in self.log.read_text(errors="replace").splitlines():
            if LEADER_LINE in line:
                stamp = " ".join(line.split()[:2])
                return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        raise AssertionError(f"server {self.name} never took the lease")

    def client(self, token: str = OPERATOR_TOKEN) -> Client:
        return Client(f"http://127.0.0.1:{self.port}", token, timeout=10)


@pytest.fixture
def start_server(fresh_database: str, tmp_path: Path) -> Iterator[Callable[[str], ServerProc]]:
    started: list[ServerProc] = []

    def start(name: str) -> ServerProc:
        port = free_port()
        old = [s for s in started if s.name == name]
        log = tmp_path / f"server-{name}-{len(old)}.log"
        env = dict(
            os.environ, MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN, MOSU_POLL_S="0.05", MOSU_TICK_S="0.5"
        )
        cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--database-url", fresh_database]
        cmd += ["--data-dir", str(tmp_path / name), "--port", str(port), "--gpus", str(GPUS)]
        cmd += ["--gpu-type", "H800", "--node-name", NODE, "--grace", "2", "--min-runtime", "0"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        server = ServerProc(name, proc, port, log)
        started.append(server)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server {name} exited:\n{log.read_text()}")
            try:
                with server.client() as c:
                    return c.health()["status"] == "ok"
            except ServerUnreachable:
                return False

        wait_for(healthy, timeout=30, what=f"server {name} to answer")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(timeout=10)
    stop_leftover_replicas(tmp_path)


def _job(tenant: str, k: int, rng: random.Random, out: Path) -> JobSpec:
    gpus = rng.choice(TENANTS[tenant][1])
    nap = f"{rng.uniform(0.5, 2.5):.2f}"
    command = [JOB_PYTHON, "-S", "-c", JOB_CODE, str(out), nap]
    return JobSpec(name=f"{tenant}-{k}", gpus=gpus, gpu_type="H800", command=command)


def _count_succeeded(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM jobs WHERE state = 'succeeded'")).one()[0]
        )


@pytest.mark.postgres
@pytest.mark.slow
def test_killing_the_leader_under_200_jobs_loses_none_and_restarts_none(
    start_server: Callable[[str], ServerProc], fresh_database: str, work: Path
) -> None:
    out = work
    for g in range(GPUS):  # shared by every tenant's user
        (out / f"gpu-{g}.lock").touch()
        (out / f"gpu-{g}.lock").chmod(0o666)
    rng = random.Random(20260)
    a = start_server("a")
    wait_for(a.leads, timeout=10, what="server a to lead")
    b = start_server("b")
    with a.client() as op_a, b.client() as op_b:
        assert (op_a.health()["scheduler"], op_b.health()["scheduler"]) == ("leader", "standby")
        tokens = {}
        for k, (tenant, (promised, _sizes)) in enumerate(TENANTS.items()):
            op = (op_a, op_b)[k % 2]
            quota = QuotaSpec(guaranteed=promised, limit=promised)
            tokens[tenant] = op.create_tenant(tenant, {"H800": quota}).token

    engine = create_engine(fresh_database)
    submitted: list[int] = []
    order = [(f"t{k % 3}", k) for k in range(JOBS)]
    takeovers: list[float] = []
    downtimes: list[tuple[float, float]] = []  # from a kill until the next leader leads
    leader, standby = a, b
    try:
        # A third of the jobs go in before the first kill, the rest in steps after each.
        batches = [order[: JOBS // 3], order[JOBS // 3 : 2 * JOBS // 3], order[2 * JOBS // 3 :]]
        for kill in range(KILLS):
            for tenant, k in batches[kill] if kill < len(batches) else []:
                with standby.client(tokens[tenant]) as c:
                    submitted.append(c.submit(_job(tenant, k, rng, out)).id)
            wait_for(
                lambda: _count_running(engine) >= 2,
                timeout=60,
                what="jobs running when the leader is killed",
            )
            killed_at = time.time()  # wall clock, as event rows record it
            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait(timeout=10)
            wait_for(standby.leads, timeout=TAKEOVER_LIMIT_S, what="the standby to take over")
            takeovers.append(standby.lead_logged_at() - killed_at)
            downtimes.append((killed_at, standby.lead_logged_at()))
            with standby.client() as op:
                # The API reads the scheduler's heartbeat through a short cache (0.5 s).
                wait_for(
                    lambda op=op: op.health()["scheduler"] == "leader",
                    timeout=3,
                    what="the new leader's API to report it",
                )
            revived = start_server(leader.name)  # the dead one comes back as the standby
            leader, standby = standby, revived
        wait_for(
            lambda: _count_succeeded(engine) >= JOBS,
            timeout=ALL_DONE_TIMEOUT_S,
            what="every job to succeed",
            every=0.25,
        )
        history = _read_history(engine)
        with engine.connect() as conn:
            adopted = conn.execute(
                text("SELECT count(*) FROM events WHERE kind = 'adopted'")
            ).scalar_one()
    finally:
        engine.dispose()

    print(
        f"\nfailover: {KILLS} SIGKILLs of the leader; the standby led "
        + ", ".join(f"{t:.2f}" for t in takeovers)
        + f" s later; {adopted} running jobs adopted by the new leaders"
    )
    assert all(t < TAKEOVER_LIMIT_S for t in takeovers)
    assert len(submitted) == JOBS
    requeued = _check_history(history, submitted)
    started = _check_process_records(out, history)
    assert requeued == sum(history.jobs[j][1] - 1 for j in history.jobs)
    assert all(started[j] == [history.jobs[j][1]] for j in history.jobs), (
        "a job's process ran more than once"
    )
    ended_unwatched = sum(
        any(down <= json.loads(p.read_text())["at"] < up for down, up in downtimes)
        for p in out.glob("stop-*.json")
    )
    print(
        f"failover: all {JOBS} succeeded; {ended_unwatched} ended while no server led and "
        f"were recorded by the next; {requeued} attempts requeued before they started"
    )
    assert adopted >= 1, "no kill caught a job running: it proved nothing"


def _count_running(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs WHERE state = 'running'")).one()[0])


@dataclass
class History:
    jobs: dict[int, tuple[str, int]]
    """job id -> (state, attempts)"""
    events: list[tuple[int, int, str | None, str | None, str | None]]
    """(id, job id, from state, to state, reason) of every state event, in id order"""
    allocations: dict[tuple[int, int], list[tuple[str, tuple[int, ...], float | None]]]
    """(job id, attempt) -> [(node, GPU indices, released at)] per replica"""


def _read_history(engine: Engine) -> History:
    with engine.connect() as conn:
        jobs = {
            int(r.id): (r.state, int(r.attempts))
            for r in conn.execute(text("SELECT id, state, attempts FROM jobs"))
        }
        events = [
            (int(r.id), int(r.job_id), r.from_state, r.to_state, r.reason)
            for r in conn.execute(
                text(
                    "SELECT id, job_id, from_state, to_state, reason FROM events"
                    " WHERE kind = 'state' AND job_id IS NOT NULL ORDER BY id"
                )
            )
        ]
        allocations: dict[tuple[int, int], list[tuple[str, tuple[int, ...], float | None]]] = (
            defaultdict(list)
        )
        for r in conn.execute(
            text(
                "SELECT job_id, attempt, node, gpu_indices, released_at FROM allocations"
                " ORDER BY job_id, attempt, replica"
            )
        ):
            gpus = tuple(int(g) for g in r.gpu_indices.split(",") if g)
            allocations[int(r.job_id), int(r.attempt)].append((r.node, gpus, r.released_at))
    return History(jobs, events, dict(allocations))


ENDS = {"succeeded", "failed", "cancelled", "preempted"}


def _check_history(history: History, submitted: list[int], *, expect_success: bool = True) -> int:
    """Every job accounted for (succeeded, or just ended when not ``expect_success``);
    attempts in sequence; no GPU held twice. Returns how many attempts were requeued."""
    assert sorted(history.jobs) == sorted(submitted), "a job is missing or unexpected"
    done = {"succeeded"} if expect_success else {"succeeded", "failed"}
    not_done = {j: s for j, (s, _a) in history.jobs.items() if s not in done}
    assert not not_done, f"jobs not succeeded: {not_done}"

    attempt_of: dict[int, int] = defaultdict(int)  # job -> attempt running now (0: none)
    held: dict[tuple[str, int], int] = {}  # (node, GPU) -> job holding it
    requeued = 0
    last: dict[int, str | None] = {}
    started: dict[int, int] = defaultdict(int)
    for event_id, job, before, after, reason in history.events:
        assert last.get(job) == before, f"event {event_id}: job {job} skipped a state"
        last[job] = after
        if after == "starting":
            assert attempt_of[job] == 0, f"event {event_id}: job {job} started while running"
            started[job] += 1  # the k-th start of a job is its attempt k
            attempt = started[job]
            assert (job, attempt) in history.allocations, (
                f"event {event_id}: job {job} attempt {attempt} started without allocations"
            )
            attempt_of[job] = attempt
            for node, gpus, _released in history.allocations[job, attempt]:
                for g in gpus:
                    other = held.get((node, g))
                    assert other is None, (
                        f"event {event_id}: GPU {node}/{g} given to job {job} while job "
                        f"{other} holds it"
                    )
                    held[node, g] = job
        elif after in ENDS:
            assert attempt_of[job] != 0, f"event {event_id}: job {job} ended but never started"
            for node, gpus, released in history.allocations[job, attempt_of[job]]:
                assert released is not None, f"job {job} ended but still holds {node}/{gpus}"
                for g in gpus:
                    assert held.pop((node, g)) == job
            attempt_of[job] = 0
            if after == "preempted":
                # Only a lost attempt is requeued (its supervisor gone without a word).
                assert reason in ("restart", "node-down"), (
                    f"event {event_id}: job {job} preempted for {reason}"
                )
                requeued += 1
    assert not held, f"GPUs still held after every job finished: {held}"
    for job, (_state, attempts) in history.jobs.items():
        assert started[job] == attempts, f"job {job}: {attempts} attempts, {started[job]} starts"
    return requeued


def _check_process_records(out: Path, history: History) -> dict[int, list[int]]:
    """The job processes' own account: never two live processes of one job, never two on
    one GPU, each on the GPUs its allocation names, and each job's last attempt ran to
    the end. Returns, per job, the attempts whose process started."""
    starts: dict[tuple[int, int], dict] = {}
    for path in out.glob("start-*.json"):
        job, attempt = (int(x) for x in path.stem.split("-")[1:])
        starts[job, attempt] = json.loads(path.read_text())
    assert {j for j, _a in starts} == set(history.jobs), "a job never ran a process"
    for (job, attempt), seen in sorted(starts.items()):
        assert seen["alone"], (
            f"job {job} attempt {attempt} started while another process of it lived"
        )
        assert all(seen["gpus_free"]), (
            f"job {job} attempt {attempt} got GPUs {seen['gpus']} that a live process held"
        )
        [(_node, gpus, _released)] = history.allocations[job, attempt]
        assert [int(g) for g in seen["gpus"]] == list(gpus)
        stop = out / f"stop-{job}-{attempt}.json"
        if stop.exists():
            assert json.loads(stop.read_text())["at"] >= seen["at"]
    for job, (_state, attempts) in history.jobs.items():
        final = out / f"stop-{job}-{attempts}.json"
        assert final.exists(), f"job {job}'s succeeded attempt {attempts} left no stop record"
        assert json.loads(final.read_text())["how"] == "done"
    started: dict[int, list[int]] = defaultdict(list)
    for job, attempt in sorted(starts):
        started[job].append(attempt)
    return dict(started)


# --- the history check itself, on made-up histories (no database needed) ---------------


def _history(
    jobs: dict[int, tuple[str, int]],
    runs: list[tuple[int, str, str]],
    gpus: dict[tuple[int, int], tuple[int, ...]],
) -> History:
    """``runs``: (job, from state, to state) in history order; allocations on n0."""
    events = [
        (
            k,
            job,
            None if before == "-" else before,
            after,
            "restart" if after == "preempted" else None,
        )
        for k, (job, before, after) in enumerate(runs, start=1)
    ]
    return History(jobs, events, {key: [("n0", g, 1.0)] for key, g in gpus.items()})


def _one_run(job: int) -> list[tuple[int, str, str]]:
    return [(job, "-", "pending"), (job, "pending", "starting"), (job, "starting", "running")]


REQUEUE = [(1, "running", "preempted"), (1, "preempted", "pending")]


@pytest.mark.parametrize(
    ("runs", "gpus", "want_error"),
    [
        pytest.param(
            [*_one_run(1), (1, "running", "succeeded"), *_one_run(2), (2, "running", "succeeded")],
            {(1, 1): (0, 1), (2, 1): (0, 1)},
            None,
            id="the same GPUs given again after the first job ended are fine",
        ),
        pytest.param(
            [*_one_run(1), *_one_run(2), (1, "running", "succeeded"), (2, "running", "succeeded")],
            {(1, 1): (0, 1), (2, 1): (1, 2)},
            "GPU n0/1 given to job 2 while job 1 holds it",
            id="a GPU given to a second job while the first holds it is caught",
        ),
        pytest.param(
            [
                *_one_run(1),
                (1, "running", "starting"),
                (1, "starting", "running"),
                (1, "running", "succeeded"),
            ],
            {(1, 1): (0,), (1, 2): (1,)},
            "job 1 started while running",
            id="a job started again while its attempt runs is caught",
        ),
        pytest.param(
            [*_one_run(1), (1, "running", "succeeded"), (2, "-", "pending")],
            {(1, 1): (0,)},
            "jobs not succeeded: {2: 'pending'}",
            id="a job left pending is caught",
        ),
    ],
)
def test_history_check(
    runs: list[tuple[int, str, str]],
    gpus: dict[tuple[int, int], tuple[int, ...]],
    want_error: str | None,
) -> None:
    final = {job: after for job, _before, after in runs}
    starts = {job: sum(1 for j, _b, a in runs if j == job and a == "starting") for job in final}
    history = _history({j: (final[j], starts[j]) for j in final}, runs, gpus)
    if want_error is None:
        assert _check_history(history, sorted(final)) == 0
    else:
        with pytest.raises(AssertionError, match=re.escape(want_error)):
            _check_history(history, sorted(final))


def test_history_check_counts_requeues_and_catches_a_lost_job() -> None:
    runs = [*_one_run(1), *REQUEUE, (1, "pending", "starting"), (1, "starting", "running")]
    runs.append((1, "running", "succeeded"))
    history = _history({1: ("succeeded", 2)}, runs, {(1, 1): (0,), (1, 2): (3,)})
    assert _check_history(history, [1]) == 1
    with pytest.raises(AssertionError, match="a job is missing"):
        _check_history(history, [1, 2])
