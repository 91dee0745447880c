"""API throughput and submit-to-start latency of a real ``mosu`` server.

Starts the server as a subprocess on 127.0.0.1 (SQLite under a temporary data dir,
and PostgreSQL when ``MOSU_TEST_POSTGRES_URL`` names a server: a fresh database is
created and dropped), declares one node of 8 GPUs, and measures:

- submit-to-start on an idle cluster: one job at a time, the server's own
  ``started_at - submitted_at`` (the job is a 1-GPU ``true``), and submit-to-running:
  until the ``running`` event, once the replica's supervisor has started its process
  in the sandbox (``bench/bench_launch.py`` takes that start apart);
- submissions per second: ``--connections`` keep-alive connections posting 1-GPU jobs
  as fast as the server answers, with latency percentiles (jobs start 8 at a time and
  queue up behind, so the scheduler works while the API is measured), and the server
  process's CPU time (user + system, all its threads) per submission;
- as a ceiling, the same client calling ``GET /v1/health`` (no auth, no database):
  what the HTTP stack and the client leave on this machine.

The load comes from ``wrk`` (one C thread, a Lua script for the POST) when the binary is
on PATH, otherwise from ``--processes`` Python processes each running an asyncio httpx
client; the JSON names the client used. Client and server share this machine's cores.

Prints a table and a JSON object. Goal: >= 500 submissions/s, p99 <= 100 ms,
submit-to-start <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from benchkit import drop_database, free_port, fresh_database, have_wrk, run_wrk
from mosu.agent.supervised import supervisors_under

TOKEN = "mosu_op_bench-operator-token"


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


def measure_start_latency(url: str, token: str, samples: int) -> tuple[list[float], list[float]]:
    """Per sample: submit-to-start (the engine placed it) and submit-to-running (its
    replica runs: the supervisor has started the process and the store recorded it)."""
    out, running = [], []
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
            events = c.get(f"/v1/jobs/{job_id}/events").json()["events"]
            ran = next(e["at"] for e in events if e["to_state"] == "running")
            running.append(_epoch(ran) - _epoch(got["submitted_at"]))
            # Let it finish so the next sample also meets an idle cluster.
            while c.get(f"/v1/jobs/{job_id}").json()["state"] not in ("succeeded", "failed"):
                time.sleep(0.01)
    return out, running


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
{keys}
"""


WRK_KEYS = """
local sent = 0
local prefix = string.format("%d-%d", os.time(), math.random(1, 1000000000))
request = function()
  sent = sent + 1
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. sent
  return wrk.format()
end
"""
"""Every request with an ``Idempotency-Key`` of its own, as the CLI and the client send."""


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pick_client(wanted: str) -> str:
    if wanted == "auto":
        return "wrk" if have_wrk() else "python"
    if wanted == "wrk" and not have_wrk():
        raise SystemExit("--client wrk: no wrk binary on PATH (Debian package wrk)")
    return wanted


def load_wrk(
    url: str,
    path: str,
    token: str | None,
    body: dict | None,
    seconds: float,
    connections: int,
    keyed: bool = False,
) -> dict:
    """Drive ``path`` with wrk for ``seconds``; POST ``body`` when given (``keyed``: each
    with an idempotency key of its own)."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = WRK_SCRIPT.format(
        method="POST" if body is not None else "GET",
        body=json.dumps(json.dumps(body)) if body is not None else "nil",
        auth=auth,
        keys=WRK_KEYS if keyed and body is not None else "",
    )
    return run_wrk(url + path, script, seconds, connections)


def _python_worker(
    url: str,
    path: str,
    token: str | None,
    body: dict | None,
    count: int,
    concurrency: int,
    conn,
    go,
    keyed: bool = False,
) -> None:
    """One load process: ``concurrency`` asyncio tasks over one keep-alive client."""
    import asyncio

    async def main() -> tuple[list[float], int]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        latencies: list[float] = []
        failures = 0
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as c:

            async def task(n: int) -> None:
                nonlocal failures
                for _ in range(n):
                    t0 = time.perf_counter()
                    if body is None:
                        r = await c.get(path)
                    else:
                        keys = {"Idempotency-Key": uuid.uuid4().hex} if keyed else None
                        r = await c.post(path, json=body, headers=keys)
                    latencies.append(time.perf_counter() - t0)
                    failures += r.status_code >= 300

            share = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
            await asyncio.gather(*(task(n) for n in share))
        return latencies, failures

    conn.send("ready")
    go.wait()
    conn.send(asyncio.run(main()))
    conn.close()


def load_python(
    url: str,
    path: str,
    token: str | None,
    body: dict | None,
    total: int,
    processes: int,
    connections: int,
    keyed: bool = False,
) -> dict:
    """Drive ``path`` with ``total`` requests from ``processes`` asyncio httpx processes
    holding ``connections`` keep-alive connections between them."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    per_proc = max(1, connections // processes)
    procs, pipes = [], []
    go = ctx.Event()
    for i in range(processes):
        recv, send = ctx.Pipe(duplex=False)
        count = total // processes + (i < total % processes)
        args = (url, path, token, body, count, per_proc, send, go, keyed)
        procs.append(ctx.Process(target=_python_worker, args=args))
        pipes.append(recv)
    for p in procs:
        p.start()
    # Start-up (imports) is not load: time from the moment every process is ready.
    for r in pipes:
        r.recv()
    t0 = time.perf_counter()
    go.set()
    results = [r.recv() for r in pipes]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    latencies = [x for lat, _ in results for x in lat]
    failures = sum(f for _, f in results)
    if failures:
        raise SystemExit(f"{failures} requests to {path} failed")
    return {
        "requests": len(latencies),
        "wall_s": wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def drive(
    client: str,
    server: Server,
    path: str,
    token: str | None,
    body: dict | None,
    args: argparse.Namespace,
) -> dict:
    """Load ``path`` with the chosen client; the rate, latency and server CPU per request."""
    cpu0 = server_cpu_s(server.proc.pid)
    keyed = args.idempotency_keys
    if client == "wrk":
        got = load_wrk(server.url, path, token, body, args.seconds, args.connections, keyed)
    else:
        got = load_python(
            server.url,
            path,
            token,
            body,
            args.submissions,
            args.processes,
            args.connections,
            keyed,
        )
    cpu = server_cpu_s(server.proc.pid) - cpu0
    return {
        "requests": got["requests"],
        "wall_s": round(got["wall_s"], 3),
        "per_s": round(got["requests"] / got["wall_s"], 1),
        "p50_ms": round(got["p50_ms"], 2),
        "p99_ms": round(got["p99_ms"], 2),
        "max_ms": round(got["max_ms"], 2),
        "server_cpu_ms_per_request": round(cpu / max(1, got["requests"]) * 1000, 3),
        "server_cpu_share": round(cpu / got["wall_s"], 2),
    }


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
            client = args.client
            health = drive(client, server, "/v1/health", None, None, args)
            latency, running = measure_start_latency(server.url, tenant_token, args.latency_samples)
            body = job("bench")
            throughput = drive(client, server, "/v1/jobs", tenant_token, body, args)
        finally:
            server.stop()
            # A stopped server leaves its replicas running: let the last ones end.
            deadline = time.monotonic() + 30
            while supervisors_under(Path(tmp)) and time.monotonic() < deadline:
                time.sleep(0.05)
    return {
        "backend": name,
        "client": client,
        "submit_to_start_s": {
            "samples": len(latency),
            "p50": round(statistics.median(latency), 4),
            "p99": round(percentile(latency, 0.99), 4),
            "max": round(max(latency), 4),
            "all": [round(x, 4) for x in latency],
        },
        "submit_to_running_s": {
            "samples": len(running),
            "p50": round(statistics.median(running), 4),
            "p99": round(percentile(running, 0.99), 4),
            "max": round(max(running), 4),
        },
        "throughput": throughput,
        "health": health,
    }


def postgres_database() -> tuple[str, str, str] | None:
    base = os.environ.get("MOSU_TEST_POSTGRES_URL")
    if not base:
        return None
    return fresh_database(base, "mosu_bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when on PATH (auto), or Python asyncio processes",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk: load duration")
    parser.add_argument("--submissions", type=int, default=6000, help="python: request count")
    parser.add_argument("--processes", type=int, default=2, help="python: client processes")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="every submission with an Idempotency-Key of its own (as the CLI sends)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.submissions, args.latency_samples = 3.0, 1000, 8
    args.client = pick_client(args.client)
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
    head = ("backend", "client", "submit/s", "p50 ms", "p99 ms", "cpu ms/sub", "start p99 s")
    head += ("running p99 s",)
    head += ("health/s", "cpu ms/health")
    print(" ".join(f"{h:>13}" for h in head))
    for r in results:
        t, s, h = r["throughput"], r["submit_to_start_s"], r["health"]
        row = (r["backend"], r["client"], t["per_s"], t["p50_ms"], t["p99_ms"])
        row += (
            t["server_cpu_ms_per_request"],
            s["p99"],
            r["submit_to_running_s"]["p99"],
            h["per_s"],
            h["server_cpu_ms_per_request"],
        )
        print(" ".join(f"{x:>13}" for x in row))
    out = {"bench": "api", "quick": args.quick, "idempotency_keys": args.idempotency_keys}
    print(json.dumps({**out, "results": results}, indent=2))


if __name__ == "__main__":
    main()
