"""What compute credits cost and how exactly they add up.

- metering: 1,000 running replicas (125 jobs of 8, 20 tenants with grants) charged once
  a minute of virtual time, in one transaction each, as the scheduler does; the CPU time
  of this process per metering (the server's share: SQLite runs in-process, PostgreSQL's
  own backend is not counted) and the wall time. Goal: <= 50 ms CPU per minute.
- reconciliation: jobs (1,000; 100 with ``--quick``) run over virtual time, some
  preempted with and without checkpoints, metered every minute; the ledger's charges less
  refunds against ``mosu usage`` x the rate less refunds, in micro-credits.
- submissions: a real ``mosu up`` with credits off (no rates, no grants) and one with
  credits on (a rate card, a grant, the ``hold`` policy), side by side in one run:
  submissions per second and p99 latency from concurrent clients.

Prints a table and a JSON object.

    .venv/bin/python bench/bench_credits.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchkit import free_port
from mosu.core.credits import MICRO
from mosu.core.reasons import StopReason
from mosu.service.db.credit_rows import CreditEntryRow, CreditGrantRow, CreditRateRow
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.services.auth import OPERATOR
from mosu.service.services.credits_meter import meter_running
from mosu.service.services.lifecycle import finish
from mosu.service.services.usage import usage

T0 = 1_800_000_000.0
RATE_PER_HOUR = 3.25
TOKEN = "mosu_op_bench-credits-token"


def _seed_store(sessions, tenants: int, nodes: int) -> None:
    with sessions.begin() as s:
        for i in range(tenants):
            s.add(TenantRow(name=f"t{i}", weight=1.0, created_at=T0))
        s.flush()
        for i in range(tenants):
            s.add(QuotaRow(tenant=f"t{i}", gpu_type="H800", guaranteed_milli=16_000))
            g = CreditGrantRow(
                tenant=f"t{i}", amount_micro=10**6 * MICRO, effective_at=T0,
                expires_at=None, priority=0, note="bench", created_at=T0,
            )  # fmt: skip
            s.add(g)
            s.flush()
            s.add(CreditEntryRow(
                tenant=f"t{i}", kind="grant", amount_micro=g.amount_micro, at=T0,
                grant_id=g.id, key=f"grant:{g.id}", note="",
            ))  # fmt: skip
        for i in range(nodes):
            s.add(NodeRow(name=f"n{i}", gpu_type="H800", gpus=8, cpu_milli=10**6, created_at=T0))
        s.add(
            CreditRateRow(
                resource="H800", effective_at=T0, micro_per_hour=round(RATE_PER_HOUR * MICRO),
                borrowed_micro_per_hour=round(RATE_PER_HOUR * MICRO * 0.6), created_at=T0,
            )
        )  # fmt: skip


def _start(s, job_no: int, tenant: str, replicas: int, now: float, node: int, ckpt) -> JobRow:
    job = JobRow(
        tenant=tenant, name=f"j{job_no}", kind="train", state="running", spec={},
        gpus=1, replicas=replicas, submitted_at=now, started_at=now, attempts=1,
        checkpoint_every_s=ckpt,
    )  # fmt: skip
    s.add(job)
    s.flush()
    for r in range(replicas):
        s.add(
            AllocationRow(
                job_id=job.id, attempt=1, replica=r, tenant=tenant,
                node=f"n{(node + r // 8) % 10_000}", gpu_type="H800", gpu_indices=str(r % 8),
                gpu_milli=1000, allocated_at=now,
            )
        )  # fmt: skip
    return job


def metering(url: str, meterings: int) -> dict:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    _seed_store(sessions, tenants=20, nodes=125)
    with sessions.begin() as s:
        for j in range(125):
            _start(s, j, f"t{j % 20}", 8, T0, j, None)
    cpu, wall = [], []
    for m in range(meterings + 1):
        now = T0 + 60.0 * (m + 1)
        c0, w0 = time.process_time(), time.perf_counter()
        with sessions.begin() as s:
            meter_running(s, now=now)
        c1, w1 = time.process_time(), time.perf_counter()
        if m:  # the first also classifies every replica (guaranteed or borrowed) once
            cpu.append((c1 - c0) * 1000)
            wall.append((w1 - w0) * 1000)
    engine.dispose()
    return {
        "replicas": 1000,
        "meterings": meterings,
        "cpu_ms_median": round(statistics.median(cpu), 2),
        "cpu_ms_max": round(max(cpu), 2),
        "wall_ms_median": round(statistics.median(wall), 2),
    }


def reconciliation(url: str, jobs: int, seed: int = 7) -> dict:
    """Jobs start and stop over virtual time (about 40 running at once), metered every
    minute; a third of the stops are preemptions, half of those with checkpoints."""
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    _seed_store(sessions, tenants=10, nodes=100)
    now = T0
    running: list[tuple[int, float]] = []  # (job id, end time)
    started = 0
    next_meter = now + 60.0
    preempted = 0
    while started < jobs or running:
        # The next thing to happen: a start (one every ~20 s), an end or a metering.
        next_start = now + rng.expovariate(1 / 20) if started < jobs else float("inf")
        next_end = min((e for _j, e in running), default=float("inf"))
        now = min(next_start, next_end, next_meter)
        with sessions.begin() as s:
            if now == next_meter:
                meter_running(s, now=now)
                next_meter += 60.0
            elif now == next_end:
                job_id = next(j for j, e in running if e == next_end)
                running = [(j, e) for j, e in running if j != job_id]
                row = s.get(JobRow, job_id)
                if rng.random() < 1 / 3:
                    row.stop_reason = StopReason.PREEMPT
                    preempted += 1
                finish(s, row, exit_code=0, now=now)
            else:
                ckpt = rng.choice([None, 300.0])
                replicas = rng.choice([1, 1, 2, 4, 8])
                job = _start(s, started, f"t{started % 10}", replicas, now, started % 100, ckpt)
                running.append((job.id, now + rng.uniform(30, 3 * 3600)))
                started += 1
    with sessions() as s:
        gpu_s = sum(r.gpu_seconds for r in usage(s, principal=OPERATOR, now=now))
        sums = dict(
            s.execute(
                select(CreditEntryRow.kind, func.sum(CreditEntryRow.amount_micro)).group_by(
                    CreditEntryRow.kind
                )
            ).all()
        )
        # What ran above each tenant's guarantee is charged the borrowed rate: the
        # independent side prices each interval's GPU-seconds at its own rate.
        by_rate = dict(
            s.execute(
                text(
                    "SELECT borrowed, SUM((end_ms - start_ms) * gpu_milli) FROM credit_intervals "
                    "GROUP BY borrowed"
                )
            ).all()
        )
    engine.dispose()
    charged = -int(sums.get("charge", 0))
    refunded = int(sums.get("refund", 0))
    borrowed_gpu_s = int(by_rate.get(1, by_rate.get(True, 0)) or 0) / 1e6
    guaranteed_gpu_s = gpu_s - borrowed_gpu_s
    expected = (guaranteed_gpu_s * RATE_PER_HOUR + borrowed_gpu_s * RATE_PER_HOUR * 0.6) / 3600
    expected_micro = expected * MICRO
    return {
        "jobs": jobs,
        "preempted": preempted,
        "usage_gpu_hours": round(gpu_s / 3600, 3),
        "ledger_charged": charged / MICRO,
        "ledger_refunded": refunded / MICRO,
        "ledger_net": (charged - refunded) / MICRO,
        "usage_x_rates_minus_refunds": round((expected_micro - refunded) / MICRO, 6),
        "difference_micro": round(charged - expected_micro),
        "difference_bound_micro": jobs * 8,
        "note": "a charge rounds down once per replica run (telescoping), so the ledger "
        "is below usage x rate by less than one micro-credit per replica run",
    }


# ------------------------------------------------------------------ submissions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MOSU_OPERATOR_TOKEN": TOKEN, "MOSU_CREDITS_METER_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mosu.cli.main", "up", "--data-dir", str(data_dir),
         "--port", str(port), "--gpus", "8", "--gpu-type", "H800"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mosu up did not start")


def submissions(credits_on: bool, total: int, clients: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _server(Path(tmp) / "data")
        try:
            op = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
            r = op.post("/v1/tenants", json={"name": "acme", "quotas": {"H800": {"guaranteed": 8}}})
            token = r.json()["token"]
            if credits_on:
                op.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": 2.5}]})
                op.post("/v1/credits/grants", json={"tenant": "acme", "amount": 10**9})
            latencies: list[float] = []
            lock = threading.Lock()
            per_client = total // clients

            def client() -> None:
                with httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                ) as c:
                    for i in range(per_client):
                        body = {"name": f"j{i}", "gpus": 1, "command": "sleep 5"}
                        t0 = time.perf_counter()
                        r = c.post("/v1/jobs", json=body)
                        dt = time.perf_counter() - t0
                        if r.status_code == 201:
                            with lock:
                                latencies.append(dt)

            threads = [threading.Thread(target=client) for _ in range(clients)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - began
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    return {
        "credits": "on" if credits_on else "off",
        "submitted": len(latencies),
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def _postgres() -> tuple[str, str] | None:
    admin = os.environ.get("MOSU_TEST_POSTGRES_URL")
    if not admin:
        return None
    admin = make_url(admin).set(drivername="postgresql+psycopg").render_as_string(False)
    name = f"mosu_bench_credits_{os.getpid()}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return admin, make_url(admin).set(database=name).render_as_string(False)


def _drop(admin: str, url: str) -> None:
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    eng.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer of everything (CI)")
    args = parser.parse_args()
    meterings = 3 if args.quick else 30
    jobs = 100 if args.quick else 1000
    total = 80 if args.quick else 2000
    out: dict = {"metering": {}, "reconciliation": {}, "submissions": []}
    with tempfile.TemporaryDirectory() as tmp:
        out["metering"]["sqlite"] = metering(f"sqlite:///{tmp}/meter.db", meterings)
        out["reconciliation"]["sqlite"] = reconciliation(f"sqlite:///{tmp}/rec.db", jobs)
    pg = _postgres()
    if pg is not None:
        admin, url = pg
        try:
            out["metering"]["postgresql"] = metering(url, meterings)
        finally:
            _drop(admin, url)
    for on in (False, True):
        out["submissions"].append(submissions(on, total, clients=8))
    off, on = out["submissions"]
    out["submissions_ratio_on_over_off"] = round(on["per_s"] / off["per_s"], 3)
    print(f"{'metering 1,000 replicas':<32}{'cpu ms (median)':>16}{'cpu ms (max)':>14}")
    for backend, m in out["metering"].items():
        print(f"  {backend:<30}{m['cpu_ms_median']:>16}{m['cpu_ms_max']:>14}")
    for backend, r in out["reconciliation"].items():
        print(
            f"reconciliation {backend}: {r['jobs']} jobs, ledger {r['ledger_net']:.6f}, "
            f"usage x rates - refunds {r['usage_x_rates_minus_refunds']:.6f}, "
            f"difference {r['difference_micro']} micro-credits"
        )
    print(f"{'submissions':<16}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for s in out["submissions"]:
        print(f"  credits {s['credits']:<6}{s['per_s']:>10}{s['p50_ms']:>10}{s['p99_ms']:>10}")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
