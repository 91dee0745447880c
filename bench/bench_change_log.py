"""The change log's cost per inserted job on PostgreSQL, by trigger revision.

For each of ``--revisions`` (default: the per-row triggers of ``0015_change_log`` and
the head's per-statement insert triggers), in a fresh schema of ``--postgres URL``:
``--batches`` transactions each inserting ``--rows`` jobs in one statement (what a
submission batch does), timed as the database backend's CPU (user + system, from
``/proc``, so the server must run on this machine). Revisions alternate over
``--rounds`` rounds and the median of each is reported, with its ratio to the first:
other load on the machine shifts absolute numbers, not the ratio much.

    .venv/bin/python bench/bench_change_log.py [--quick] [--json] [--postgres URL]
        [--rounds 4] [--batches 400] [--rows 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mosu.service.db.session import downgrade, make_engine, upgrade

INSERT = text(
    "INSERT INTO jobs (tenant, name, kind, state, version, priority, replicas, gpus,"
    " gpu_milli, gpu_types, cpu_milli, mem_mib, topology, submitted_at, attempts,"
    " attained_gpu_s, message, stop_signalled, spec)"
    " SELECT 'acme', 'j' || g, 'training', 'pending', 0, 0, 1, 1, 1000, '', 0, 0, 'none',"
    " 0, 0, 0, '', false, '{}' FROM generate_series(1, :n) g"
)


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, revision: str, batches: int, rows: int) -> float:
    """Backend CPU microseconds per inserted job at ``revision``."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(scoped.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        if revision != "head":
            downgrade(engine, revision)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tenants (name, weight, created_at) VALUES ('acme', 1, 0)")
            )
        with engine.connect() as conn:
            pid = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
            conn.commit()
            before = backend_cpu_s(pid)
            for _ in range(batches):
                conn.execute(INSERT, {"n": rows})
                conn.commit()
            spent = backend_cpu_s(pid) - before
            logged = conn.scalar(text("SELECT count(*) FROM change_log WHERE kind = 'job'"))
        assert logged == batches * rows, f"{logged} of {batches * rows} inserts logged"
        return spent / (batches * rows) * 1e6
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast (CI)")
    parser.add_argument("--json", action="store_true", help="only the JSON object on stdout")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("MOSU_TEST_POSTGRES_URL"),
        help="a PostgreSQL server on this machine (default: $MOSU_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--revisions", nargs="+", default=["0015_change_log", "head"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--rows", type=int, default=32, help="jobs per insert statement")
    args = parser.parse_args()
    if not args.postgres:
        print(json.dumps({"bench": "change_log", "skipped": "no PostgreSQL server given"}))
        return
    rounds, batches = (2, 50) if args.quick else (args.rounds, args.batches)
    spent: dict[str, list[float]] = {r: [] for r in args.revisions}
    for i in range(rounds):
        order = args.revisions if i % 2 == 0 else list(reversed(args.revisions))
        for revision in order:
            spent[revision].append(run(args.postgres, revision, batches, args.rows))
    medians = {r: statistics.median(v) for r, v in spent.items()}
    first = medians[args.revisions[0]]
    if not args.json:
        print(f"{'revision':24} {'backend CPU us/row':>19} {'ratio':>6}")
        for r, m in medians.items():
            print(f"{r:24} {m:19.1f} {m / first:6.2f}")
    print(
        json.dumps(
            {
                "bench": "change_log",
                "quick": args.quick,
                "rows_per_statement": args.rows,
                "backend_cpu_us_per_row": {r: round(m, 1) for r, m in medians.items()},
                "ratio_to_first": {r: round(m / first, 2) for r, m in medians.items()},
                "runs": {r: [round(x, 1) for x in v] for r, v in spent.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
