"""API throughput and submit-to-start latency of a real ``mosu`` server.

Starts the server as a subprocess on 127.0.0.1 (SQLite under a temporary data dir,
and PostgreSQL when ``MOSU_TEST_POSTGRES_URL`` names a server: a fresh database is
created and dropped), declares one node of 8 GPUs, and measures:

- submit-to-start on an idle cluster: one job at a time, the server's own
  ``started_at - submitted_at`` (the job is a 1-GPU ``true``);
- submissions per second: ``--clients`` threads posting 1-GPU jobs as fast as the
  server answers, with each request's latency (jobs start 8 at a time and queue up
  behind, so the scheduler works while the API is measured);
- as a baseline, the same clients calling ``GET /v1/health`` (no auth, no database):
  what the HTTP stack and the client threads leave on this machine.

Prints a table and a JSON object. Goal: >= 500 submissions/s, p99 <= 100 ms,
submit-to-start <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

TOKEN = "mosu_op_bench-operator-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--data-dir", str(data_dir)]
        cmd += ["--port", str(self.port), "--gpus", "8", "--gpu-type", "H800"]
        cmd += ["--grace", "1", "--node-name", "bench"]
        if database_url:
            cmd += ["--database-url", database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        env["MOSU_OPERATOR_TOKEN"] = TOKEN
        env["MOSU_POLL_S"] = "0.02"
        self.log = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit("server did not come up in 60 s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def job(name: str) -> dict[str, object]:
    return {"name": name, "gpus": 1, "command": ["true"]}


def measure_start_latency(url: str, token: str, samples: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for k in range(samples):
            job_id = c.post("/v1/jobs", json=job(f"lat-{k}")).json()["id"]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                got = c.get(f"/v1/jobs/{job_id}").json()
                if got["started_at"] is not None and got["state"] != "starting":
                    break
                time.sleep(0.005)
            else:
                raise SystemExit(f"job {job_id} did not start within 10 s")
            started = _epoch(got["started_at"]) - _epoch(got["submitted_at"])
            out.append(started)
            # Let it finish so the next sample also meets an idle cluster.
            while c.get(f"/v1/jobs/{job_id}").json()["state"] not in ("succeeded", "failed"):
                time.sleep(0.01)
    return out


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure_throughput(url: str, token: str, total: int, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = total // clients

    def run(worker: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for k in range(per_client):
                t0 = time.perf_counter()
                r = c.post("/v1/jobs", json=job(f"tp-{worker}-{k}"))
                mine.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    with lock:
                        errors.append(r.text[:200])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} submissions failed, first: {errors[0]}")
    return {
        "submissions": len(latencies),
        "wall_s": round(wall, 3),
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


def measure_baseline(url: str, total: int, clients: int) -> float:
    """Requests per second of ``GET /v1/health`` (no auth, no database): the ceiling the
    HTTP stack and the client threads leave on this machine."""
    per_client = total // clients

    def run() -> None:
        with httpx.Client(base_url=url) as c:
            for _ in range(per_client):
                c.get("/v1/health")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(per_client * clients / (time.perf_counter() - t0), 1)


def run_backend(name: str, database_url: str | None, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="mosu-bench-") as tmp:
        server = Server(Path(tmp) / "data", database_url)
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as c:
                r = c.post(
                    "/v1/tenants", json={"name": "bench", "quotas": {"H800": {"guaranteed": 8}}}
                )
                tenant_token = r.json()["token"]
            baseline = measure_baseline(server.url, args.submissions, args.clients)
            latency = measure_start_latency(server.url, tenant_token, args.latency_samples)
            throughput = measure_throughput(
                server.url, tenant_token, args.submissions, args.clients
            )
        finally:
            server.stop()
    return {
        "backend": name,
        "submit_to_start_s": {
            "samples": len(latency),
            "p50": round(statistics.median(latency), 4),
            "p99": round(percentile(latency, 0.99), 4),
            "max": round(max(latency), 4),
            "all": [round(x, 4) for x in latency],
        },
        "throughput": throughput,
        "health_requests_per_s": baseline,
    }


def postgres_database() -> tuple[str, str, str] | None:
    base = os.environ.get("MOSU_TEST_POSTGRES_URL")
    if not base:
        return None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"mosu_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    admin_url = url.render_as_string(hide_password=False)
    return admin_url, name, url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument("--submissions", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-samples", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.submissions, args.latency_samples = 240, 8
    results = [run_backend("sqlite", None, args)]
    pg = postgres_database()
    if pg is None:
        print("PostgreSQL skipped: MOSU_TEST_POSTGRES_URL is not set", file=sys.stderr)
    else:
        admin_url, name, url = pg
        try:
            results.append(run_backend("postgresql", url, args))
        finally:
            drop_database(admin_url, name)
    head = ("backend", "submit/s", "p50 ms", "p99 ms", "start p50 s", "start p99 s", "health/s")
    print(
        f"{head[0]:<11} {head[1]:>9} {head[2]:>8} {head[3]:>8} {head[4]:>12} {head[5]:>12}"
        f" {head[6]:>9}"
    )
    for r in results:
        t, s = r["throughput"], r["submit_to_start_s"]
        print(
            f"{r['backend']:<11} {t['per_s']:>9} {t['p50_ms']:>8} {t['p99_ms']:>8} "
            f"{s['p50']:>12} {s['p99']:>12} {r['health_requests_per_s']:>9}"
        )
    print(json.dumps({"bench": "api", "quick": args.quick, "results": results}, indent=2))


if __name__ == "__main__":
    main()
