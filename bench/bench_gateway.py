"""Gateway overhead, streaming time to first token, and a load-step autoscaling timeline.

Starts ``mosu up`` (SQLite in a temporary data dir, ``--sandbox none``: replicas are
``mosu mock-llm`` processes run as this user) with its gateway, a tenant, services and a
key, then measures side by side in one run:

- overhead: non-streaming completions at a fixed rate (open loop: each request is sent
  on schedule whether or not earlier ones have answered), against the replica directly
  and through the gateway, alternating phases; p50 and p99 of both and the difference;
- streaming: time to first token, direct and through the gateway, at a low fixed rate;
- a load step: closed-loop clients go from 1x to 8x and back to idle on a service with
  1..4 replicas; every half second the service's wanted and ready replicas and the
  gateway's in-flight count are sampled; failed requests are counted (every non-200 or
  transport error), and plotted to ``--plot``.

The client runs in this process on the same cores as the server, gateway and replicas:
absolute latencies include that contention; the overhead is the difference between the
two paths measured under the same conditions. Prints a table and a JSON object.
Goals: overhead p50 <= 1 ms, p99 <= 5 ms at 500 requests/s; streaming TTFT +2 ms at most;
zero failed requests through the load step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchkit import free_port
from mosu.agent.supervised import stop_supervisors_under

TOKEN = "mosu_op_bench-gateway-operator"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:port, found through /proc."""
    hexport = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(hexport) and parts[3] == "0A":
                    inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise LookupError(f"nothing listens on {port}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(check, timeout: float, what: str, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


class Platform:
    def __init__(self, data_dir: Path) -> None:
        self.port, self.gateway_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        env.update({"MOSU_OPERATOR_TOKEN": TOKEN, "MOSU_TICK_S": "0.25", "PYTHONPATH": SRC})
        env["MOSU_CONFIG"] = str(data_dir / "client.json")
        cmd = [sys.executable, "-m", "mosu.cli.main", "up", "--data-dir", str(data_dir / "d")]
        cmd += ["--port", str(self.port), "--gateway-port", str(self.gateway_port)]
        cmd += ["--gpus", "8", "--gpu-type", "H800", "--sandbox", "none", "--grace", "5"]
        cmd += ["--min-runtime", "0"]
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait(lambda: httpx.get(self.url + "/v1/health").status_code == 200, 60, "mosu up")
        wait(lambda: httpx.get(self.gateway + "/health").status_code == 200, 30, "the gateway")
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"})
        r = self.api.post(
            "/v1/tenants",
            json={"name": "bench", "quotas": {"H800": {"guaranteed": 8}}},
        )
        r.raise_for_status()

    def service(self, name: str, mock_args: list[str], **fields: object) -> None:
        spec = {
            "kind": "service",
            "name": name,
            "model": name,
            "command": [
                *(sys.executable, "-m", "mosu.cli.main", "mock-llm", "--model", name),
                *mock_args,
            ],
            "env": {"PYTHONPATH": SRC},
            "gpus": 1,
            "drain_grace": 10,
            **fields,
        }
        self.api.post("/v1/services", json=spec, params={"tenant": "bench"}).raise_for_status()

    def show(self, name: str) -> dict:
        return self.api.get(f"/v1/services/{name}", params={"tenant": "bench"}).json()

    def key(self, *models: str) -> str:
        r = self.api.post("/v1/keys", json={"models": list(models)}, params={"tenant": "bench"})
        r.raise_for_status()
        return r.json()["key"]

    def stop(self) -> None:
        self.api.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        # Replicas outlive a stopped server by design: end the ones this run started.
        stop_supervisors_under(self.data_dir, grace_s=2.0)


class RawPool:
    """Keep-alive HTTP/1.1 connections for the load: a request is one write and a read of
    headers plus a Content-Length body, so the client adds as little as it can to what is
    measured (an httpx client costs more CPU per request than the gateway's whole path)."""

    def __init__(self, base: str) -> None:
        host, port = base.split("://", 1)[1].split(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        )
        writer.write(head.encode() + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


FAILURE_KINDS: dict[str, int] = {}
"""Failed requests of the fixed-rate phases by HTTP status or client-side error."""


async def fixed_rate(
    base: str, path: str, headers: dict[str, str], body: dict, rate: float, seconds: float
) -> tuple[list[float], int]:
    """Open loop: request k is sent at k / rate s; latencies (ms) and failures."""
    latencies: list[float] = []
    failures = 0
    pool = RawPool(base)
    payload = json.dumps(body).encode()

    async def one() -> None:
        nonlocal failures
        t0 = time.perf_counter()
        try:
            status = await pool.post(path, payload, headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            status = type(e).__name__
        if status == 200:
            latencies.append((time.perf_counter() - t0) * 1000)
        else:
            failures += 1
            FAILURE_KINDS[str(status)] = FAILURE_KINDS.get(str(status), 0) + 1

    # Warm the pool so neither path pays connection setup in the sample.
    await asyncio.gather(*(one() for _ in range(20)))
    latencies.clear()
    tasks = []
    start = time.perf_counter()
    for k in range(int(rate * seconds)):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    pool.close()
    return latencies, failures


async def ttft(url: str, headers: dict[str, str], body: dict, count: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            async with client.stream("POST", url, json=body, headers=headers) as r:
                first = True
                async for chunk in r.aiter_raw():
                    if chunk and first:
                        out.append((time.perf_counter() - t0) * 1000)
                        first = False
            await asyncio.sleep(0.02)
    return out


def overhead(p: Platform, key: str, rate: float, seconds: float, repeats: int) -> dict:
    replica = p.show("flat")["replicas"][0]["endpoint"]
    body = {"model": "flat", "prompt": "measure me", "max_tokens": 4}
    auth = {"authorization": f"Bearer {key}"}
    direct: list[float] = []
    via: list[float] = []
    failed = {"direct": 0, "gateway": 0}
    replica_pid = listener_pid(int(replica.rsplit(":", 1)[1]))
    gateway_pid = listener_pid(p.gateway_port)
    cpu = {"replica_direct": 0.0, "replica_via": 0.0, "gateway": 0.0}
    for _ in range(repeats):  # alternate, so drifts hit both paths alike
        r0 = cpu_s(replica_pid)
        lat, f = asyncio.run(fixed_rate(replica, "/v1/completions", {}, body, rate, seconds))
        cpu["replica_direct"] += cpu_s(replica_pid) - r0
        direct += lat
        failed["direct"] += f
        r0, g0 = cpu_s(replica_pid), cpu_s(gateway_pid)
        lat, f = asyncio.run(fixed_rate(p.gateway, "/v1/completions", auth, body, rate, seconds))
        cpu["replica_via"] += cpu_s(replica_pid) - r0
        cpu["gateway"] += cpu_s(gateway_pid) - g0
        via += lat
        failed["gateway"] += f
    stream_body = {"model": "flat", "prompt": "stream me", "max_tokens": 4, "stream": True}
    count = 20 if repeats < 3 else 100
    t_direct = asyncio.run(ttft(replica + "/v1/completions", {}, stream_body, count))
    t_via = asyncio.run(ttft(p.gateway + "/v1/completions", auth, stream_body, count))
    sent = int(rate * seconds) * repeats
    result = {"rate_per_s": rate, "requests_each": sent, "failed": failed}
    # CPU per request does not depend on how busy the machine is; latency does.
    result["cpu_ms_per_request"] = {k: 1000 * v / sent for k, v in cpu.items()}
    result["failed_by_kind"] = dict(FAILURE_KINDS)
    for name, values in (("direct", direct), ("gateway", via)):
        result[name] = {"p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99)}
    result["added_p50_ms"] = result["gateway"]["p50_ms"] - result["direct"]["p50_ms"]
    result["added_p99_ms"] = result["gateway"]["p99_ms"] - result["direct"]["p99_ms"]
    result["ttft"] = {
        "direct_p50_ms": percentile(t_direct, 0.5),
        "gateway_p50_ms": percentile(t_via, 0.5),
        "added_p50_ms": percentile(t_via, 0.5) - percentile(t_direct, 0.5),
    }
    return result


def load_step(p: Platform, key: str, phases: list[tuple[str, int, float]]) -> dict:
    """Closed-loop clients per phase; the service's replicas sampled every 0.5 s."""
    import threading

    url = p.gateway + "/v1/completions"
    auth = {"authorization": f"Bearer {key}"}
    body = {"model": "step", "prompt": "load", "max_tokens": 8}
    state = {"clients": 0, "ok": 0, "failed": 0, "stop": False}
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as c:
            while not state["stop"]:
                if index >= state["clients"]:
                    time.sleep(0.05)
                    continue
                try:
                    good = c.post(url, json=body, headers=auth).status_code == 200
                except httpx.HTTPError:
                    good = False
                with lock:
                    state["ok" if good else "failed"] += 1

    most = max(n for _, n, _ in phases)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(most)]
    for t in threads:
        t.start()
    timeline = []
    t0 = time.monotonic()
    marks = {}
    for name, clients, seconds in phases:
        state["clients"] = clients
        marks[name] = time.monotonic() - t0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s = p.show("step")
            timeline.append(
                {
                    "t": round(time.monotonic() - t0, 2),
                    "clients": clients,
                    "wanted": s["desired"],
                    "ready": s["ready"],
                    "inflight": s["inflight"],
                    "ok": state["ok"],
                    "failed": state["failed"],
                }
            )
            time.sleep(0.5)
    state["stop"] = True
    for t in threads:
        t.join(60)
    step_at = marks["8x"]
    asked = next((r["t"] for r in timeline if r["t"] >= step_at and r["wanted"] > 1), None)
    served = next((r["t"] for r in timeline if r["t"] >= step_at and r["ready"] > 1), None)
    idle_at = marks["idle"]
    down = next((r["t"] for r in timeline if r["t"] >= idle_at and r["wanted"] <= 1), None)
    return {
        "phases": [{"name": n, "clients": c, "seconds": s} for n, c, s in phases],
        "asked_more_after_s": None if asked is None else round(asked - step_at, 2),
        "more_ready_after_s": None if served is None else round(served - step_at, 2),
        "scaled_down_after_idle_s": None if down is None else round(down - idle_at, 2),
        "requests_ok": state["ok"],
        "requests_failed": state["failed"],
        "timeline": timeline,
        "marks": marks,
    }


def plot(step: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in step["timeline"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.step(t, [r["clients"] / 2 for r in step["timeline"]], where="post", label="load (clients/2)")
    ax.step(t, [r["wanted"] for r in step["timeline"]], where="post", label="replicas wanted")
    ax.step(t, [r["ready"] for r in step["timeline"]], where="post", label="replicas ready")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replicas")
    ax.set_title(f"load step 1x → 8x → idle; failed requests: {step['requests_failed']}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (CI)")
    parser.add_argument("--rate", type=float, default=None, help="requests/s (default 500)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the load step")
    args = parser.parse_args()
    rate = args.rate or (200.0 if args.quick else 500.0)
    seconds, repeats = (2.0, 1) if args.quick else (6.0, 3)
    with tempfile.TemporaryDirectory(prefix="mosu-bench-gw-") as tmp:
        p = Platform(Path(tmp))
        try:
            p.service("flat", [], replicas={"min": 1, "max": 1})
            p.service(
                "step",
                ["--ttft", "0.1", "--itl", "0.05", "--max-tokens", "8", "--startup-delay", "1"],
                replicas={"min": 1, "max": 4},
                scaling={
                    "target_inflight": 2,
                    "up_delay": 1,
                    "down_delay": 4 if args.quick else 10,
                },
            )
            key = p.key("flat", "step")
            wait(lambda: p.show("flat")["ready"] == 1 and p.show("step")["ready"] == 1, 60, "ready")
            over = overhead(p, key, rate, seconds, repeats)
            phases = (
                [("1x", 1, 2.0), ("8x", 8, 10.0), ("idle", 0, 7.0)]
                if args.quick
                else [("1x", 2, 10.0), ("8x", 16, 40.0), ("idle", 0, 30.0)]
            )
            step = load_step(p, key, phases)
        finally:
            p.stop()
    if args.plot is not None:
        plot(step, args.plot)
    result = {"overhead": over, "load_step": {k: v for k, v in step.items() if k != "timeline"}}
    result["load_step"]["timeline"] = step["timeline"]
    d, g = over["direct"], over["gateway"]
    tt = over["ttft"]
    rows = [
        (f"p50 ms @ {rate:g}/s", d["p50_ms"], g["p50_ms"], over["added_p50_ms"]),
        (f"p99 ms @ {rate:g}/s", d["p99_ms"], g["p99_ms"], over["added_p99_ms"]),
        ("stream TTFT p50 ms", tt["direct_p50_ms"], tt["gateway_p50_ms"], tt["added_p50_ms"]),
    ]
    print(f"{'':24}{'direct':>10}{'gateway':>10}{'added':>10}")
    for label, a, b, c in rows:
        print(f"{label:24}{a:10.2f}{b:10.2f}{c:10.2f}")
    print(
        f"failed: direct {over['failed']['direct']}, gateway {over['failed']['gateway']} "
        f"(by kind: {over['failed_by_kind'] or 'none'})"
    )
    c = over["cpu_ms_per_request"]
    print(
        f"CPU ms per request: replica {c['replica_direct']:.2f} (direct), "
        f"{c['replica_via']:.2f} (via gateway); gateway {c['gateway']:.2f}"
    )
    print(
        f"load step: more replicas asked {step['asked_more_after_s']} s after 8x, ready "
        f"{step['more_ready_after_s']} s after; back to 1 {step['scaled_down_after_idle_s']} s "
        f"after idle; requests ok {step['requests_ok']}, failed {step['requests_failed']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
