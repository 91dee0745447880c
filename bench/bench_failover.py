"""Failover latencies: how fast a standby takes the scheduler lease, how fast a dead Ray
node is noticed.

- Lease takeover: a child process takes the lease and is killed with SIGKILL; a standby
  in this process calls ``acquire()`` every 50 ms. Measured from the kill to the first
  successful ``acquire()``. For an SQLite file (``flock``) always; for PostgreSQL (an
  advisory lock) when ``MOSU_TEST_POSTGRES_URL`` names a server. A ``mosu server``
  standby retries every 2 s, so its takeover is this plus up to 2 s (goal: <= 10 s).
- With ``--ray`` (not in ``--quick``): a real Ray cluster on 127.0.0.1 (a head and one
  worker with 4 fake GPUs), one replica running on the worker; every process of the
  worker is killed at once. Measured from the kill until ``RayGangs.poll`` reports the
  replica lost (its runner's death is often seen first) and until Ray declares the node
  dead, which is when mosu marks it ``down`` (goal: <= 30 s).

Prints a table and a JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HOLDER = """
import sys, time
from pathlib import Path
from mosu.service.leader import FileLease, PostgresLease
kind, where, name = sys.argv[1:4]
lease = PostgresLease(where, name=name) if kind == "postgres" else FileLease(Path(where))
print("leader" if lease.acquire() else "standby", flush=True)
time.sleep(60)
"""


def lease_takeover(kind: str, where: str, repeats: int) -> list[float]:
    from mosu.service.leader import FileLease, PostgresLease

    name = f"mosu-bench-{uuid.uuid4().hex[:8]}"
    times = []
    for _ in range(repeats):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, where, name], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "leader":
            raise SystemExit("the holder process did not get the lease")
        standby = PostgresLease(where, name=name) if kind == "postgres" else FileLease(Path(where))
        if standby.acquire():
            raise SystemExit("two processes held the lease at once")
        holder.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while not standby.acquire():
            if time.monotonic() - killed > 30:
                raise SystemExit("no takeover within 30 s")
            time.sleep(0.05)
        times.append(time.monotonic() - killed)
        standby.release()
        holder.wait(timeout=10)
        holder.stdout.close()
    return times


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _kill_tree(pid: int) -> None:
    for p in _tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def ray_dead_node(temp_dir: str) -> tuple[float, float]:
    """One measurement on a fresh two-node cluster; every process started is stopped."""
    import ray
    from mosu.agent.executors.ray_executor import RayGangs, ReplicaState
    from mosu.core.api import JobLaunch, ReplicaLaunch

    port = _free_port()
    base = [str(Path(sys.executable).parent / "ray"), "start", "--block"]
    base += ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    nodes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> None:
        ports = [f"--dashboard-agent-listen-port={_free_port()}"]
        ports += [f"--dashboard-agent-grpc-port={_free_port()}"]
        ports += [f"--metrics-export-port={_free_port()}"]
        ports += [f"--runtime-env-agent-port={_free_port()}"]
        nodes.append(
            subprocess.Popen(
                [*base, "--object-store-memory=100000000", *ports, *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    try:
        start(
            "--head",
            f"--port={port}",
            "--num-gpus=0",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--dashboard-port={_free_port()}",
            f"--ray-client-server-port={_free_port()}",
            f"--temp-dir={temp_dir}",
        )
        deadline = time.monotonic() + 90
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the Ray head did not start")
            time.sleep(0.2)
        start(
            f"--address=127.0.0.1:{port}",
            "--num-gpus=4",
            "--num-cpus=1",
            "--labels=mosu.io/node=w0",
        )
        gangs = RayGangs(
            address=f"127.0.0.1:{port}",
            log_dir=Path(temp_dir) / "logs",
            remote_log_dir=str(Path(temp_dir) / "node-logs"),
            call_timeout_s=5,
        )
        while [n.node.name for n in gangs.ray_nodes() if n.alive] != ["w0"]:
            if time.monotonic() > deadline:
                raise SystemExit("the Ray worker did not register")
            time.sleep(0.5)
        gang = gangs.start(
            JobLaunch(
                job_id=1,
                attempt=1,
                tenant="default",
                argv=["sleep", "120"],
                env={},
                workdir=None,
                replicas=[
                    ReplicaLaunch(
                        replica=0, node="w0", gpu_indices=[0], gpu_milli=1000, log_path=""
                    )
                ],
            )
        )
        _kill_tree(nodes[1].pid)
        killed = time.monotonic()
        lost = down = None
        while lost is None or down is None:
            if time.monotonic() - killed > 60:
                raise SystemExit("the dead node was not noticed within 60 s")
            if lost is None and gangs.poll(gang)[0].state is ReplicaState.LOST:
                lost = time.monotonic() - killed
            if down is None and "w0" in gangs.down_nodes():
                down = time.monotonic() - killed
            time.sleep(0.2)
        return lost, down
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(nodes):
            pids = _tree(proc.pid)
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 takeovers per backend, no Ray")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--ray", action="store_true", help="also measure dead-node detection")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    results: dict[str, dict[str, float | int]] = {}

    def summarize(key: str, times: list[float]) -> None:
        results[key] = {
            "n": len(times),
            "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3),
        }

    with tempfile.TemporaryDirectory(prefix="mosu-bench-") as tmp:
        summarize(
            "lease_takeover_sqlite_flock", lease_takeover("file", f"{tmp}/db.leader", repeats)
        )
        pg = os.environ.get("MOSU_TEST_POSTGRES_URL")
        if pg:
            summarize("lease_takeover_postgres", lease_takeover("postgres", pg, repeats))
        if args.ray and not args.quick:
            lost, down = ray_dead_node(tmp)
            summarize("ray_replica_reported_lost", [lost])
            summarize("ray_node_declared_dead", [down])

    print(f"{'measurement':32} {'n':>3} {'median s':>9} {'max s':>7}")
    for key, r in results.items():
        print(f"{key:32} {r['n']:>3} {r['median_s']:>9.3f} {r['max_s']:>7.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
