"""The control plane at cluster scale: a real ``mosu server`` with the simulated executor.

Starts ``mosu server --executor simulated`` (SQLite in a temporary data dir, or a fresh
database on the PostgreSQL server named by ``--postgres URL``, dropped after) with
``--nodes`` 8-GPU H800 nodes and a small idle A100 pool, creates ``--tenants`` tenants
sharing the H800s by guarantee and one ``probe`` tenant guaranteed the A100s, then:

1. fill: one 8-GPU job per H800 node plus ``--pending`` more, all submitted at once, so
   the cluster is full and the queue deep; running jobs last ``--duration`` seconds on
   average (uniform within +-50 %), so jobs finish and start throughout;
2. load, ``--seconds`` long: wrk (``--client``; else ``--processes`` Python client
   processes) submits 8-GPU jobs over ``--connections`` connections to the queue as fast
   as the server answers (each request's latency timed by the client),
   while a probe submits a 1-GPU job to the idle A100 pool every 0.25 s and reads its
   submit-to-start from the server (``started_at - submitted_at``);
3. the cycle's p95 from the server's ``mosu_scheduler_cycle_seconds`` histogram over the
   load (the upper bound of the bucket holding the 95th percentile), each phase's mean
   from ``mosu_scheduler_phase_seconds``, the server's RSS and CPU per submission: every
   process of the server summed (API, ``--workers``, the scheduler process), the same
   without the scheduler process (the API's own cost of a submission, which does not
   depend on how many cycles ran meanwhile), and the scheduler process's CPU per cycle.

``--finished N`` first runs N short 8-GPU jobs (0.2 s on average) to completion, so the
store holds N finished jobs when the fill begins (``finished_before_load``).

Goals (PostgreSQL, 1,000 nodes, 10,000 pending): >= 1,000 submissions/s for 30 s with
p99 <= 100 ms, submit-to-start p99 <= 1 s, cycle p95 <= 1 s, RSS <= 2 GiB with 100,000
finished jobs in the store (``--finished 100000``). Client and server share this
machine's cores.

    .venv/bin/python bench/bench_scale.py [--quick] [--json] [--postgres URL]
        [--nodes 1000] [--pending 10000] [--tenants 20] [--seconds 30] [--workers 1]
        [--finished N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchkit import drop_database, free_port, fresh_database, have_wrk, run_wrk

TOKEN = "mosu_op_bench-scale-operator-token"
PROBE_NODES = 4
PROBE_EVERY_S = 0.25
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    def __init__(
        self, data_dir: Path, nodes: int, database_url: str | None, workers: int = 1
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--data-dir", str(data_dir)]
        cmd += ["--port", str(self.port), "--executor", "simulated", "--workers", str(workers)]
        cmd += ["--nodes", f"{nodes}x8:H800", "--nodes", f"{PROBE_NODES}x8:A100"]
        cmd += ["--grace", "0", "--min-runtime", "0"]
        if database_url:
            cmd += ["--database-url", database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        env["MOSU_OPERATOR_TOKEN"] = TOKEN
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("server did not come up in 120 s")

    def pids(self) -> list[int]:
        """The server's process and every process under it (workers, the scheduler)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_s(self, pids: list[int] | None = None) -> float:
        total = 0.0
        for pid in pids or self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_mib(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                continue
        return total

    def scheduler_pids(self) -> list[int]:
        """The scheduler process (named ``mosu-scheduler`` in ``/proc/PID/comm``)."""
        found = []
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "mosu-scheduler":
                    found.append(pid)
            except OSError:
                continue
        return found

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def scrape(c: httpx.Client) -> Samples:
    r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    r.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def job_body(k: int, duration_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + k)
    run_s = round(duration_s * rng.uniform(0.5, 1.5), 1)
    return {"name": f"j{k}", "gpus": 8, "gpu_type": "H800", "command": f"sleep {run_s}"}


def _submitter(
    url: str,
    tokens: list[str],
    first: int,
    count: int | None,
    seconds: float | None,
    duration_s: float,
    concurrency: int,
    conn: Any,
    go: Any,
) -> None:
    """One client process: ``concurrency`` tasks over keep-alive connections, submitting
    ``count`` jobs, or as many as fit in ``seconds`` from the go signal."""

    async def main() -> tuple[list[float], int]:
        until = None if seconds is None else time.monotonic() + seconds
        latencies: list[float] = []
        failures = 0
        next_k = first
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:

            async def task() -> None:
                nonlocal next_k, failures
                while True:
                    if count is not None and next_k >= first + count:
                        return
                    if until is not None and time.monotonic() >= until:
                        return
                    k = next_k
                    next_k += 1
                    headers = {
                        "Authorization": f"Bearer {tokens[k % len(tokens)]}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    }
                    t0 = time.perf_counter()
                    r = await c.post("/v1/jobs", json=job_body(k, duration_s, 1), headers=headers)
                    latencies.append(time.perf_counter() - t0)
                    failures += r.status_code != 201

            await asyncio.gather(*(task() for _ in range(concurrency)))
        return latencies, failures

    conn.send("ready")
    go.wait()
    conn.send(asyncio.run(main()))
    conn.close()


def submit_many(
    url: str,
    tokens: list[str],
    *,
    processes: int,
    connections: int,
    duration_s: float,
    first: int,
    count: int | None = None,
    seconds: float | None = None,
) -> dict[str, float]:
    """Submit from ``processes`` client processes; the rate and latency percentiles."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs, pipes = [], []
    for i in range(processes):
        recv, send = ctx.Pipe(duplex=False)
        if count is None:  # timed: far apart, so processes never reuse a job number
            share, start = None, first + i * 10_000_000
        else:
            share = count // processes + (i < count % processes)
            start = first + sum(count // processes + (j < count % processes) for j in range(i))
        args = (url, tokens, start, share, seconds, duration_s, connections // processes, send, go)
        procs.append(ctx.Process(target=_submitter, args=args))
        pipes.append(recv)
    for p in procs:
        p.start()
    for recv in pipes:
        recv.recv()  # imports are not load: time from when every process is ready
    t0 = time.perf_counter()
    go.set()
    results = [recv.recv() for recv in pipes]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    latencies = [x for lat, _ in results for x in lat]
    failures = sum(f for _, f in results)
    if failures:
        raise SystemExit(f"{failures} submissions failed")
    return {
        "submissions": len(latencies),
        "wall_s": wall,
        "per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


WRK_SUBMIT = """
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["Content-Type"] = "application/json"
local tokens = {{{tokens}}}
local sent = 0
local prefix = string.format("%d-%d", os.time(), math.random(1, 1000000000))
request = function()
  sent = sent + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[sent % #tokens + 1]
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. sent
  local run_s = {duration} * (0.5 + math.random())
  local body = string.format(
    '{{"name":"w%d","gpus":8,"gpu_type":"H800","command":"sleep %.1f"}}', sent, run_s)
  return wrk.format(nil, nil, nil, body)
end
{stop}
"""
"""The same submissions as ``_submitter``'s (8-GPU jobs of the tenants in turn, each with
an idempotency key of its own), from wrk."""
WRK_STOP_AFTER = """
local answered = 0
response = function(status, headers, body)
  answered = answered + 1
  if answered == {count} then
    io.write("WRK_DONE\\n")
    io.flush()
  end
end
"""
"""Stop once ``count`` submissions were answered (the ones in flight then may land too)."""


def submit_wrk(
    url: str,
    tokens: list[str],
    *,
    connections: int,
    duration_s: float,
    seconds: float,
    count: int | None = None,
) -> dict[str, float]:
    """Submit for ``seconds``, or until ``count`` are answered (``seconds`` then bounds it)."""
    script = WRK_SUBMIT.format(
        tokens=", ".join(json.dumps(t) for t in tokens),
        duration=float(duration_s),
        stop="" if count is None else WRK_STOP_AFTER.format(count=count),
    )
    got = run_wrk(url, script, seconds, connections)
    return {
        "submissions": got["requests"],
        "wall_s": got["wall_s"],
        "per_s": got["requests"] / got["wall_s"],
        "p50_ms": got["p50_ms"],
        "p99_ms": got["p99_ms"],
    }


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Probe(threading.Thread):
    """Submits a 1-GPU job to the idle A100 pool every ``PROBE_EVERY_S`` while the load
    runs; afterwards reads each one's submit-to-start from the server."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.ids: list[int] = []
        self.unstarted = 0
        self.done = threading.Event()

    def run(self) -> None:
        body = {"name": "probe", "gpus": 1, "gpu_type": "A100", "command": "sleep 0.5"}
        while not self.done.wait(PROBE_EVERY_S):
            r = self.client.post("/v1/jobs", json=body)
            r.raise_for_status()
            self.ids.append(r.json()["id"])

    def starts(self, timeout_s: float = 60) -> list[float]:
        out = []
        deadline = time.monotonic() + timeout_s
        for job_id in self.ids:
            while True:
                got = self.client.get(f"/v1/jobs/{job_id}").json()
                if got["started_at"] is not None:
                    out.append(_epoch(got["started_at"]) - _epoch(got["submitted_at"]))
                    break
                if time.monotonic() > deadline:
                    # Never started: counted as the whole wait, against the goal.
                    out.append(time.time() - _epoch(got["submitted_at"]))
                    self.unstarted += 1
                    break
                time.sleep(0.05)
        return out


def histogram_quantile(
    before: Samples, after: Samples, name: str, q: float, **match: str
) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of the observations made
    between two scrapes (None without any); ``match``: the labels of one series."""
    bounds = []
    for (sample, labels), value in after.items():
        if sample == f"{name}_bucket" and all(dict(labels).get(k) == v for k, v in match.items()):
            le = dict(labels)["le"]
            bounds.append((float(le), value - before.get((sample, labels), 0.0)))
    bounds.sort()
    total = bounds[-1][1] if bounds else 0
    if total <= 0:
        return None
    for bound, cumulative in bounds:
        if cumulative >= q * total:
            return bound
    return bounds[-1][0]


def phase_means(before: Samples, after: Samples) -> dict[str, float]:
    out = {}
    for (sample, labels), value in after.items():
        if sample == "mosu_scheduler_phase_seconds_sum":
            count_key = ("mosu_scheduler_phase_seconds_count", labels)
            n = after[count_key] - before.get(count_key, 0.0)
            if n > 0:
                total = value - before.get((sample, labels), 0.0)
                out[dict(labels)["phase"]] = round(total / n, 4)
    return out


def _gauge(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run(args: argparse.Namespace, database_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mosu-scale-") as tmp:
        server = Server(Path(tmp) / "data", args.nodes, database_url, args.workers)
        try:
            return measure(server, args)
        finally:
            server.stop()


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    op = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"})
    # The simulated nodes appear with the scheduler's first node sync.
    deadline = time.monotonic() + 60
    while _gauge(scrape(op), "mosu_gpus", gpu_type="H800", node_state="ready") < args.nodes * 8:
        if time.monotonic() > deadline:
            raise SystemExit("the simulated nodes did not appear in 60 s")
        time.sleep(0.2)
    share = args.nodes * 8 // args.tenants
    tokens = []
    for t in range(args.tenants):
        quota = {"H800": {"guaranteed": share}}
        r = op.post("/v1/tenants", json={"name": f"t{t:03d}", "quotas": quota})
        r.raise_for_status()
        tokens.append(r.json()["token"])
    r = op.post("/v1/tenants", json={"name": "probe", "quotas": {"A100": {"guaranteed": 32}}})
    r.raise_for_status()
    probe_token = r.json()["token"]
    load = {"processes": args.processes, "connections": args.connections}
    seeded_s = _finish_first(server, op, tokens, args) if args.finished else 0.0

    t0 = time.perf_counter()
    fill_count = args.nodes + args.pending
    if args.client == "wrk":
        fill = submit_wrk(
            server.url,
            tokens,
            connections=args.connections,
            duration_s=args.duration,
            seconds=3600.0,
            count=fill_count,
        )
    else:
        fill = submit_many(
            server.url, tokens, duration_s=args.duration, first=0, count=fill_count, **load
        )
    deadline = time.monotonic() + max(120.0, args.nodes * 0.2)
    while _gauge(scrape(op), "mosu_jobs", state="running") < 0.95 * args.nodes:
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not fill")
        time.sleep(0.5)
    fill_s = time.perf_counter() - t0

    before, cpu0 = scrape(op), server.cpu_s()
    sched = server.scheduler_pids()
    sched_cpu0 = server.cpu_s(sched) if sched else 0.0
    probe = Probe(server.url, probe_token)
    probe.start()
    if args.client == "wrk":
        sustained = submit_wrk(
            server.url,
            tokens,
            connections=args.connections,
            duration_s=args.duration,
            seconds=args.seconds,
        )
    else:
        sustained = submit_many(
            server.url,
            tokens,
            duration_s=args.duration,
            first=fill_count,
            seconds=args.seconds,
            **load,
        )
    probe.done.set()
    probe.join()
    cpu = server.cpu_s() - cpu0
    sched_cpu = server.cpu_s(sched) - sched_cpu0 if sched else None
    after = scrape(op)
    starts = probe.starts()
    cycles = after[("mosu_scheduler_cycle_seconds_count", ())] - before.get(
        ("mosu_scheduler_cycle_seconds_count", ()), 0.0
    )
    cycle_sum = after[("mosu_scheduler_cycle_seconds_sum", ())] - before.get(
        ("mosu_scheduler_cycle_seconds_sum", ()), 0.0
    )
    finished = _gauge(after, "mosu_jobs", state="succeeded")
    return {
        "client": args.client,
        "submissions_per_s": round(sustained["per_s"], 1),
        "submit_p50_ms": round(sustained["p50_ms"], 2),
        "submit_p99_ms": round(sustained["p99_ms"], 2),
        "submit_to_start_p99_s": round(percentile(starts, 0.99), 3) if starts else None,
        "submit_to_start_p50_s": round(percentile(starts, 0.5), 3) if starts else None,
        "probes": len(starts),
        "probes_not_started": probe.unstarted,
        "cycle_p95_s": histogram_quantile(before, after, "mosu_scheduler_cycle_seconds", 0.95),
        "cycle_mean_s": round(cycle_sum / cycles, 4) if cycles else None,
        "cycles": int(cycles),
        "phase_mean_s": phase_means(before, after),
        "snapshot_load_p95_s": histogram_quantile(
            before, after, "mosu_scheduler_phase_seconds", 0.95, phase="load"
        ),
        "rss_mib": round(server.rss_mib(), 1),
        "server_cpu_ms_per_submission": round(cpu / max(1, sustained["submissions"]) * 1000, 3),
        "server_cpu_share": round(cpu / sustained["wall_s"], 2),
        "api_cpu_ms_per_submission": (
            round((cpu - sched_cpu) / max(1, sustained["submissions"]) * 1000, 3)
            if sched_cpu is not None
            else None
        ),
        "scheduler_cpu_ms_per_cycle": (
            round(sched_cpu / cycles * 1000, 1) if sched_cpu is not None and cycles else None
        ),
        "processes": len(server.pids()),
        "submissions": sustained["submissions"],
        "fill": {
            "submissions": fill["submissions"],
            "per_s": round(fill["per_s"], 1),
            "p99_ms": round(fill["p99_ms"], 2),
            "seconds_to_full": round(fill_s, 1),
        },
        "finished_before_load": _gauge(before, "mosu_jobs", state="succeeded"),
        "seconds_to_finish_first": round(seeded_s, 1),
        "running_at_end": _gauge(after, "mosu_jobs", state="running"),
        "pending_at_end": _gauge(after, "mosu_jobs", state="pending"),
        "succeeded_at_end": finished,
    }


SEED_RUN_S = 0.2
"""Mean run time of the jobs ``--finished`` runs to completion before the fill."""


def _finish_first(server: Server, op: httpx.Client, tokens: list[str], args: Any) -> float:
    """Run ``args.finished`` short jobs to completion, so the store holds that many
    finished jobs when the fill and the load begin; the seconds it took."""
    t0 = time.perf_counter()
    if args.client == "wrk":
        submit_wrk(
            server.url,
            tokens,
            connections=args.connections,
            duration_s=SEED_RUN_S,
            seconds=3600.0,
            count=args.finished,
        )
    else:
        submit_many(
            server.url,
            tokens,
            duration_s=SEED_RUN_S,
            first=1_000_000_000,  # (names apart from the fill's and the load's)
            count=args.finished,
            processes=args.processes,
            connections=args.connections,
        )
    deadline = time.monotonic() + max(600.0, args.finished / 20)
    while _gauge(scrape(op), "mosu_jobs", state="succeeded") < args.finished:
        if time.monotonic() > deadline:
            raise SystemExit(f"{args.finished} short jobs did not finish in time")
        time.sleep(1.0)
    return time.perf_counter() - t0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


GOALS = {
    "submissions_per_s": (">=", 1000.0),
    "submit_p99_ms": ("<=", 100.0),
    "submit_to_start_p99_s": ("<=", 1.0),
    "cycle_p95_s": ("<=", 1.0),
    "rss_mib": ("<=", 2048.0),
}


CURVE = "100:1000,1000:10000,5000:50000"
CURVE_KEYS = (
    "nodes",
    "pending",
    "cycle_p95_s",
    "cycle_mean_s",
    "submit_p99_ms",
    "submissions_per_s",
    "submit_to_start_p99_s",
    "rss_mib",
    "scheduler_cpu_ms_per_cycle",
    "fill_s",
)


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(x) for x in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("sizes are NODES:PENDING,NODES:PENDING,...") from None
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError("sizes are NODES:PENDING,NODES:PENDING,...")
    return [(p[0], p[1]) for p in pairs]


def _database(args: argparse.Namespace) -> Any:
    """Run ``run`` against a fresh PostgreSQL database (or SQLite), dropped after."""

    def go(a: argparse.Namespace) -> dict[str, Any]:
        if not args.postgres:
            return run(a, None)
        admin_url, name, url = fresh_database(args.postgres, "mosu_scale")
        try:
            return run(a, url)
        finally:
            drop_database(admin_url, name)

    return go


def curve(args: argparse.Namespace) -> None:
    """Cost as work grows: one run per size, each ``--seconds`` of load, a point each;
    ``--curve-budget`` seconds bound the whole (a size not started in time is skipped,
    and said so)."""
    go = _database(args)
    points, skipped = [], []
    began = time.monotonic()
    for nodes, pending in args.curve:
        if time.monotonic() - began > args.curve_budget:
            skipped.append(f"{nodes}:{pending}")
            continue
        point = argparse.Namespace(**{**vars(args), "nodes": nodes, "pending": pending})
        t0 = time.monotonic()
        result = go(point)
        result["fill_s"] = result["fill"]["seconds_to_full"]
        points.append(
            {"nodes": nodes, "pending": pending, **{k: result.get(k) for k in CURVE_KEYS[2:]}}
        )
        print(f"{nodes} nodes, {pending} pending: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    report = {
        "bench": "scale-curve",
        "backend": "postgresql" if args.postgres else "sqlite",
        "tenants": args.tenants,
        "workers": args.workers,
        "seconds": args.seconds,
        "points": points,
        "skipped": skipped,
        "plot": {
            "points": "points",
            "x": "nodes",
            "y": ["cycle_p95_s", "submit_p99_ms", "scheduler_cpu_ms_per_cycle", "rss_mib"],
        },
    }
    table = sys.stderr if args.json else sys.stdout
    print("  ".join(f"{k:>14}" for k in CURVE_KEYS), file=table)
    for p in points:
        print("  ".join(f"{'-' if p.get(k) is None else p[k]:>14}" for k in CURVE_KEYS), file=table)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast (CI)")
    parser.add_argument("--json", action="store_true", help="only the JSON object on stdout")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (fresh database)")
    parser.add_argument("--nodes", type=_positive, default=1000, help="8-GPU simulated nodes")
    parser.add_argument("--pending", type=_positive, default=10_000, help="jobs queued behind")
    parser.add_argument("--tenants", type=_positive, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    parser.add_argument("--duration", type=float, default=120.0, help="mean run time, s")
    parser.add_argument("--processes", type=_positive, default=2, help="client processes")
    parser.add_argument("--connections", type=_positive, default=16)
    parser.add_argument("--workers", type=_positive, default=1, help="API processes")
    parser.add_argument(
        "--finished",
        type=int,
        default=0,
        help="short jobs run to completion first, so the store holds that many finished",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="the sustained load's generator: wrk when on PATH (auto), or Python processes",
    )
    parser.add_argument(
        "--curve",
        type=_sizes,
        nargs="?",
        const=_sizes(CURVE),
        help=f"grow the size instead, NODES:PENDING,... (default {CURVE})",
    )
    parser.add_argument(
        "--curve-budget", type=float, default=1800.0, help="seconds the curve may take"
    )
    args = parser.parse_args()
    if args.client == "auto":
        args.client = "wrk" if have_wrk() else "python"
    elif args.client == "wrk" and not have_wrk():
        raise SystemExit("--client wrk: no wrk binary on PATH (Debian package wrk)")
    if args.quick:
        args.nodes, args.pending, args.tenants = 20, 200, 4
        args.seconds, args.duration = 3.0, 5.0
        if args.curve is not None:
            args.curve = [(10, 100), (20, 200)]
    if args.curve is not None:
        curve(args)
        return
    result = _database(args)(args)
    size = {"nodes": args.nodes, "pending": args.pending, "tenants": args.tenants}
    size["workers"] = args.workers
    report = {
        "bench": "scale",
        "quick": args.quick,
        "backend": "postgresql" if args.postgres else "sqlite",
        **size,
        "seconds": args.seconds,
        **result,
        "goals": {k: f"{op} {v:g}" for k, (op, v) in GOALS.items()},
    }
    table = sys.stderr if args.json else sys.stdout
    print(f"{'measure':<24}{'value':>12}{'goal':>12}", file=table)
    for key, (op, goal) in GOALS.items():
        value = report[key]
        met = value is not None and (value >= goal if op == ">=" else value <= goal)
        shown = "-" if value is None else f"{value:g}"
        print(
            f"{key:<24}{shown:>12}{op + ' ' + format(goal, 'g'):>12} {'ok' if met else 'MISS'}",
            file=table,
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
