"""kill -9 during metering: processes metering the same store as fast as they can are
killed at random moments and started again (one on SQLite; two at once on PostgreSQL,
as two servers would); afterwards every replica's intervals tile its run and the ledger
holds exactly one charge per interval: nothing lost, nothing doubled."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mosu.core.credits import MICRO
from mosu.service.db.credit_rows import (
    CreditEntryRow,
    CreditGrantRow,
    CreditIntervalRow,
    CreditRateRow,
)
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.services.credits_meter import meter_running
from tests.pg import fresh_postgres_database, postgres_url

METER = """
import sys, time
from sqlalchemy.exc import IntegrityError
from mosu.service.db.session import make_engine, session_factory
from mosu.service.services.credits_meter import meter_running
sessions = session_factory(make_engine(sys.argv[1]))
print("ready", flush=True)
while True:
    try:
        with sessions.begin() as s:
            meter_running(s, now=time.time())
    except IntegrityError:
        pass  # the other process metered an interval first: redo from its end
"""
RATE_MICRO_PER_HOUR = 3_600_000_017  # odd, so roundings are exercised


def _seed(url: str, replicas: int) -> float:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    start = time.time()
    with sessions.begin() as s:
        s.add(TenantRow(name="acme", weight=1.0, created_at=start))
        s.add(NodeRow(name="n0", gpu_type="H800", gpus=8, cpu_milli=10**6, created_at=start))
        s.flush()
        s.add(QuotaRow(tenant="acme", gpu_type="H800", guaranteed_milli=4000))
        s.add(
            CreditRateRow(
                resource="H800", effective_at=start - 1, micro_per_hour=RATE_MICRO_PER_HOUR,
                created_at=start,
            )
        )  # fmt: skip
        g = CreditGrantRow(
            tenant="acme", amount_micro=10**9 * MICRO, effective_at=start - 1, priority=0,
            note="", created_at=start,
        )  # fmt: skip
        s.add(g)
        s.flush()
        s.add(CreditEntryRow(tenant="acme", kind="grant", amount_micro=g.amount_micro,
                             at=start, grant_id=g.id, note=""))  # fmt: skip
        for k in range(replicas):
            job = JobRow(tenant="acme", name=f"j{k}", kind="train", state="running", spec={},
                         submitted_at=start, started_at=start, attempts=1)  # fmt: skip
            s.add(job)
            s.flush()
            s.add(AllocationRow(job_id=job.id, attempt=1, replica=0, tenant="acme", node="n0",
                                gpu_type="H800", gpu_indices=str(k % 8), gpu_milli=1000,
                                allocated_at=start))  # fmt: skip
    engine.dispose()
    return start


def _spawn(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", METER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _crash_and_check(url: str, processes: int) -> int:
    _seed(url, replicas=40)
    rng = random.Random(13)
    procs = [_spawn(url) for _ in range(processes)]
    kills = 0
    try:
        for _ in range(6):
            time.sleep(rng.uniform(0.1, 0.5))
            k = rng.randrange(processes)
            procs[k].send_signal(signal.SIGKILL)  # mid-transaction, most likely
            procs[k].wait(timeout=10)
            procs[k].stdout.close()  # type: ignore[union-attr]
            kills += 1
            procs[k] = _spawn(url)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
            p.stdout.close()  # type: ignore[union-attr]
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as s:
        intervals = list(s.scalars(select(CreditIntervalRow)))
        charges = list(s.scalars(select(CreditEntryRow).where(CreditEntryRow.kind == "charge")))
        starts = {a.id: a.allocated_at for a in s.scalars(select(AllocationRow))}
    engine.dispose()
    by_alloc: dict[int, list[CreditIntervalRow]] = defaultdict(list)
    for i in intervals:
        by_alloc[i.allocation_id].append(i)
    assert len(by_alloc) == 40
    paid: dict[tuple[int, int], int] = defaultdict(int)
    for e in charges:
        paid[(e.allocation_id, e.interval_start_ms)] -= e.amount_micro
    for a, its in by_alloc.items():
        its.sort(key=lambda i: i.start_ms)
        assert its[0].start_ms == round(starts[a] * 1000)
        for x, y in itertools.pairwise(its):
            assert x.end_ms == y.start_ms  # no gap, no overlap
        # What the whole metered span costs, rounded down once: slicing lost nothing.
        span = its[-1].end_ms - its[0].start_ms
        assert sum(i.amount_micro for i in its) == span * RATE_MICRO_PER_HOUR // 3_600_000
        for i in its:
            assert paid[(a, i.start_ms)] == i.amount_micro  # charged once, in full
    assert len(paid) == sum(1 for i in intervals if i.amount_micro > 0)
    return kills


def test_kill_9_while_metering_on_sqlite(tmp_path: Path):
    assert _crash_and_check(f"sqlite:///{tmp_path / 'mosu.db'}", processes=1) >= 5


@pytest.mark.postgres
def test_kill_9_while_two_processes_meter_one_postgresql():
    with fresh_postgres_database(postgres_url(), "mosu_crash") as url:
        assert _crash_and_check(url, processes=2) >= 5


@pytest.mark.postgres
def test_a_second_server_metering_the_same_interval_fails_and_retries_from_the_new_end():
    """Server A has metered but not committed; server B meters the same replicas at the
    same moment: B waits on the unique key, then fails when A commits; B's retry starts
    where A ended and charges nothing twice."""
    with fresh_postgres_database(postgres_url(), "mosu_twice") as url:
        start = _seed(url, replicas=3)
        a_engine, b_engine = make_engine(url), make_engine(url)
        a, b = session_factory(a_engine), session_factory(b_engine)
        failed: list[BaseException] = []
        now = start + 30

        def server_b() -> None:
            try:
                with b.begin() as s:
                    meter_running(s, now=now + 0.5)
            except IntegrityError as exc:
                failed.append(exc)

        with a.begin() as s:
            assert meter_running(s, now=now) == 3
            thread = threading.Thread(target=server_b)
            thread.start()
            time.sleep(1.0)  # B is blocked on A's uncommitted keys
        thread.join(timeout=30)
        assert len(failed) == 1
        with b.begin() as s:  # the retry
            assert meter_running(s, now=now + 0.5) == 3
        with a() as s:
            intervals = list(s.scalars(select(CreditIntervalRow)))
        a_engine.dispose()
        b_engine.dispose()
        assert len(intervals) == 6
        ends = sorted({(i.start_ms, i.end_ms) for i in intervals})
        assert ends == [
            (round(start * 1000), round(now * 1000)),
            (round(now * 1000), round((now + 0.5) * 1000)),
        ]
