"""What reading a cycle's input costs: the whole store each time, or the changes since.

Fills a store (SQLite in a temporary directory, or a fresh database on the PostgreSQL
server named by ``--postgres URL``, dropped after) with ``--nodes`` 8-GPU nodes, one
running job per node with its allocation, ``--pending`` queued jobs and ``--finished``
successful ones across ``--tenants`` tenants, then times, ``--rounds`` times each:

- ``full``: ``load_snapshot`` (every node, tenant, quota, pending and active job, open
  allocation and the recent runs, read again);
- ``kept, idle``: ``LiveSnapshot.load`` when nothing changed;
- ``kept, busy``: ``LiveSnapshot.load`` after ``--changes`` submissions and as many
  pending jobs' reasons written (what a cycle writes, and hands the kept state), between
  two loads.

Each load is checked against a full one after the timings (the same engine input).

    .venv/bin/python bench/bench_snapshot_load.py [--quick] [--postgres URL]
        [--nodes 1000] [--pending 10000] [--finished 20000] [--changes 100] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from benchkit import drop_database, fresh_database
from mosu.core.reasons import PendingReason
from mosu.engine.estimates import StartEstimates
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.services.live_snapshot import LiveSnapshot, describe_difference
from mosu.service.services.scheduling import Wait, load_snapshot

ESTIMATES = StartEstimates(stop_grace_s=30.0)


def job(i: int, tenants: int, state: str, now: float) -> dict[str, object]:
    return {
        "tenant": f"t{i % tenants}",
        "name": f"j{i}",
        "kind": "train",
        "state": state,
        "version": 1,
        "priority": 0,
        "replicas": 1,
        "gpus": 8,
        "gpu_milli": 1000,
        "gpu_types": "",
        "cpu_milli": 0,
        "mem_mib": 0,
        "topology": "none",
        "estimate_s": None if i % 3 else 3600.0,
        "spec": {"command": ["true"]},
        "submitted_at": now - 7200 + i * 1e-3,
        "started_at": now - 3600 if state != "pending" else None,
        "finished_at": now - 60 + i * 1e-3 if state == "succeeded" else None,
        "attempts": 0 if state == "pending" else 1,
        "attained_gpu_s": 0.0,
        "message": "",
        "stop_signalled": False,
    }


def fill(sessions: sessionmaker[Session], args: argparse.Namespace) -> None:
    now = time.time()
    with sessions.begin() as s:
        conn = s.connection()
        conn.execute(
            insert(TenantRow),
            [{"name": f"t{t}", "weight": 1.0, "created_at": now} for t in range(args.tenants)],
        )
        per = args.nodes * 8 * 1000 // args.tenants
        conn.execute(
            insert(QuotaRow),
            [
                {"tenant": f"t{t}", "gpu_type": "H800", "guaranteed_milli": per}
                for t in range(args.tenants)
            ],
        )
        conn.execute(
            insert(NodeRow),
            [
                {
                    "name": f"node-{n:05d}",
                    "gpu_type": "H800",
                    "vendor": "nvidia",
                    "gpus": 8,
                    "cpu_milli": 128_000,
                    "mem_mib": 1 << 20,
                    "gpu_mem_mib": 81_920,
                    "zone": "zone-0",
                    "rack": f"rack-{n // 32}",
                    "state": "ready",
                    "created_at": now,
                }
                for n in range(args.nodes)
            ],
        )
    batches = [
        ("running", args.nodes),
        ("succeeded", args.finished),
        ("pending", args.pending),
    ]
    i = 0
    for state, count in batches:
        for start in range(0, count, 5000):
            with sessions.begin() as s:
                conn = s.connection()
                rows = [
                    job(i + k, args.tenants, state, now) for k in range(min(5000, count - start))
                ]
                conn.execute(insert(JobRow), rows)
                i += len(rows)
    with sessions.begin() as s:
        running = list(s.scalars(select(JobRow.id).where(JobRow.state == "running")))
        s.connection().execute(
            insert(AllocationRow),
            [
                {
                    "job_id": job_id,
                    "attempt": 1,
                    "replica": 0,
                    "tenant": f"t{k % args.tenants}",
                    "node": f"node-{k:05d}",
                    "gpu_type": "H800",
                    "gpu_indices": "0,1,2,3,4,5,6,7",
                    "gpu_milli": 1000,
                    "cpu_milli": 0,
                    "mem_mib": 0,
                    "allocated_at": now - 3600,
                }
                for k, job_id in enumerate(running)
            ],
        )


def change(
    sessions: sessionmaker[Session], args: argparse.Namespace, round_: int
) -> list[tuple[int, Wait]]:
    """What happens between two cycles: submissions, and reasons a cycle writes (what
    the loop then hands its kept state)."""
    now = time.time()
    with sessions.begin() as s:
        conn = s.connection()
        base = 10_000_000 + round_ * args.changes
        conn.execute(
            insert(JobRow),
            [job(base + k, args.tenants, "pending", now) for k in range(args.changes)],
        )
        ids = list(
            s.scalars(
                select(JobRow.id)
                .where(JobRow.state == "pending")
                .order_by(JobRow.id)
                .offset(round_ * args.changes)
                .limit(args.changes)
            )
        )
        conn.execute(
            update(JobRow)
            .where(JobRow.id.in_(ids))
            .values(pending_reason=PendingReason.QUOTA_EXCEEDED, estimated_start=round(now))
        )
    wait: Wait = (PendingReason.QUOTA_EXCEEDED, None, round(now), None)
    return [(job_id, wait) for job_id in ids]


def timed(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_s": round(statistics.median(ordered), 5),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 5),
    }


def run(url: str, args: argparse.Namespace) -> dict[str, object]:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    fill(sessions, args)
    live = LiveSnapshot(use_history=True)

    def full() -> None:
        with sessions() as s:
            load_snapshot(s, now=time.time(), use_history=True, estimates=ESTIMATES)

    def kept() -> None:
        with sessions() as s:
            live.load(s, now=time.time(), estimates=ESTIMATES)

    first = timed(kept)  # reads everything once
    live.prune(sessions)
    full_s = [timed(full) for _ in range(args.rounds)]
    idle_s = [timed(kept) for _ in range(args.rounds)]
    busy_s = []
    for r in range(args.rounds):
        live.note_reasons(change(sessions, args, r))
        busy_s.append(timed(kept))
    now = time.time()
    with sessions() as s:
        a = live.load(s, now=now, estimates=ESTIMATES)
    with sessions() as s:
        b = load_snapshot(s, now=now, use_history=True, estimates=ESTIMATES)
    differs = describe_difference(a, b)
    engine.dispose()
    return {
        "pending": len(b.snapshot.pending),
        "running": len(b.snapshot.running),
        "first_kept_load_s": round(first, 5),
        "full": summary(full_s),
        "kept_idle": summary(idle_s),
        "kept_busy": summary(busy_s),
        "full_reads_by_kept": live.full_loads,
        "same_input": differs == "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small store, three rounds (CI)")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (fresh database)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--finished", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.pending, args.finished, args.rounds = 50, 500, 500, 3
        args.changes = min(args.changes, 20)
    if args.postgres:
        admin_url, name, url = fresh_database(args.postgres, "mosu_snapshot")
        try:
            report = run(url, args)
        finally:
            drop_database(admin_url, name)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = run(f"sqlite:///{Path(tmp) / 'mosu.db'}", args)
    report = {
        "backend": "postgresql" if args.postgres else "sqlite",
        "nodes": args.nodes,
        "finished": args.finished,
        "changes_per_round": args.changes,
        **report,
    }
    print(f"{'load':<12}{'median s':>12}{'p95 s':>12}")
    for key in ("full", "kept_idle", "kept_busy"):
        row = report[key]
        assert isinstance(row, dict)
        print(f"{key:<12}{row['median_s']:>12.5f}{row['p95_s']:>12.5f}")
    print(json.dumps(report))
    if not report["same_input"]:
        raise SystemExit("the kept state differs from a full read")


if __name__ == "__main__":
    main()
