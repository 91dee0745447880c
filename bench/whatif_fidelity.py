"""How faithful is ``mosu whatif``? Run a real history through ``mosu up``, export it,
replay it as configured and compare the replayed waits with the real ones.

A synthetic incubator workload (``traces.synthetic``, H800) is scaled in time by
``--speedup`` (trace seconds per wall second) and submitted, job by job at its scaled
submit time, to a real ``mosu up`` (local executor: every replica is a real ``sleep``
under its supervisor; the extra 8-GPU nodes are registered through the API, and all of
them run on this machine). Run times are scaled the same way and kept within
[``MIN_RUN_S``, ``MAX_RUN_S``] of wall time; the minimum runtime before a preemption is
scaled too. After the last submission the jobs get ``--drain`` seconds to end; what
still runs is exported as running. Then ``mosu history export`` and a what-if
(``--add-nodes 2x8:H800``) over the export, whose fidelity line is the result.

Not a ``bench_*`` script: it starts a server and runs for minutes (``--minutes``), so
CI does not run it. ``--quick`` is a one-minute smoke run.

    .venv/bin/python bench/whatif_fidelity.py [--quick] [--minutes 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import free_port
from mosu.client import Client, ServerUnreachable
from mosu.core.api import JobSpec, NodeCreate
from mosu.core.models import GPU_MILLI
from mosu.sim.metrics import wait_error
from mosu.sim.whatif import Changes, load_history, plan_whatif, real_waits, run_whatif
from mosu.traces import synthetic

TOKEN = "mosu_op_whatif-fidelity-token"
MIN_RUN_S = 0.2
MAX_RUN_S = 90.0
PROFILE_MIN_RUNTIME_S = 120.0


def start_server(data: Path, port: int, min_runtime: float) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MOSU_OPERATOR_TOKEN=TOKEN, MOSU_POLL_S="0.05")
    env["MOSU_CONFIG"] = str(data.parent / "client.json")
    cmd = [sys.executable, "-m", "mosu.cli.main", "up", "--data-dir", str(data)]
    cmd += ["--port", str(port), "--gpus", "8", "--gpu-type", "H800", "--node-name", "n00"]
    cmd += ["--grace", "1", "--min-runtime", f"{min_runtime:g}"]
    log = (data.parent / "server.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with Client(f"http://127.0.0.1:{port}", TOKEN, timeout=5) as c:
                if c.health()["status"] == "ok":
                    return proc
        except ServerUnreachable:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("mosu up did not come up; see server.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall minutes of arrivals")
    parser.add_argument("--speedup", type=float, default=1000.0, help="trace s per wall s")
    parser.add_argument("--nodes", type=int, default=16, help="8-GPU H800 nodes")
    parser.add_argument("--companies", type=int, default=12)
    parser.add_argument("--drain", type=float, default=120.0, help="wall s for jobs to end")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, help="keep the export and the what-if here")
    args = parser.parse_args()
    minutes, nodes = (1.0, 4) if args.quick else (args.minutes, args.nodes)
    speedup = args.speedup
    gpus = nodes * 8
    days = minutes * 60 * speedup / 86400
    tenants, jobs = synthetic.generate(
        args.seed, companies=args.companies, days=days, gpus=gpus, gpu_type="H800"
    )
    work = Path(tempfile.mkdtemp(prefix="mosu-fidelity-"))
    out = args.out or work / "out"
    port = free_port()
    server = start_server(work / "data", port, PROFILE_MIN_RUNTIME_S / speedup)
    lag: list[float] = []
    try:
        with Client(f"http://127.0.0.1:{port}", TOKEN, timeout=30) as c:
            for k in range(1, nodes):
                c.register_node(NodeCreate(name=f"n{k:02d}", gpu_type="H800", gpus=8))
            for t in tenants:
                quotas = {
                    gpu_type: {
                        "guaranteed": q.guaranteed_milli / GPU_MILLI,
                        **({"limit": q.limit_milli / GPU_MILLI} if q.limit_milli else {}),
                    }
                    for gpu_type, q in t.quotas
                }
                c.create_tenant(t.name, quotas, weight=t.weight)
            t0 = time.monotonic()
            for job in jobs:
                due = t0 + job.submit_s / speedup
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                lag.append(max(0.0, -wait))
                run = min(MAX_RUN_S, max(MIN_RUN_S, (job.duration_s or 0.0) / speedup))
                spec = JobSpec(
                    name=job.id,
                    kind=job.kind,
                    replicas=job.replicas,
                    gpus=job.shape.gpus,
                    gpu_type="H800",
                    command=["sleep", f"{run:.3f}"],
                )
                c.submit(spec, tenant=job.tenant)
            submitted = time.monotonic() - t0
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                if not c.list_jobs(state="pending", limit=1) and not c.list_jobs(
                    state="running", limit=1
                ):
                    break
                time.sleep(2)
            exported = c.export_history()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    out.mkdir(parents=True, exist_ok=True)
    history_dir = out / "history"
    history_dir.mkdir(exist_ok=True)
    for name, text in exported.files.items():
        (history_dir / name).write_text(text)
    meta = exported.model_dump(exclude={"files"})
    (history_dir / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    history = load_history(history_dir)
    t1 = time.perf_counter()
    result = run_whatif(plan_whatif(history, Changes(add_nodes=("2x8:H800",))))
    replay_s = time.perf_counter() - t1
    report = result.report
    (out / "whatif.json").write_text(json.dumps(report, indent=2) + "\n")
    # The error by submission time: where the platform fell behind, it shows.
    waits = real_waits(history.jobs)
    span = max(j.submit_s for j in history.jobs) or 1.0
    tenths = []
    for k in range(10):
        lo, hi = k * span / 10, (k + 1) * span / 10
        ids = {j.id for j in history.jobs if lo <= j.submit_s < hi or (k == 9 and j.submit_s == hi)}
        part = wait_error(result.before, {i: w for i, w in waits.items() if i in ids})
        tenths.append({"from_s": round(lo, 1), **part})
    summary = {
        "jobs": len(jobs),
        "gpus": gpus,
        "speedup": speedup,
        "wall_s_submitting": round(submitted, 1),
        "submit_lag_p99_s": round(sorted(lag)[int(0.99 * (len(lag) - 1))], 3) if lag else None,
        "counts": exported.counts,
        "fidelity": report["fidelity"],
        "fidelity_by_tenth": tenths,
        "both_replays_s": round(replay_s, 2),
        "out": str(out),
    }
    print(json.dumps(summary, indent=2))
    head = f"{'submitted from s':>17} {'compared':>9} {'median err s':>13} {'p90 err s':>10}"
    print(f"{head} {'real med s':>11} {'replayed med s':>15}")
    for row in [*tenths, {"from_s": "all", **report["fidelity"]}]:
        print(
            f"{row['from_s']:>17} {row['jobs']:>9} {row['median_error_s'] or 0:>13.2f} "
            f"{row['p90_error_s'] or 0:>10.2f} {row['median_real_wait_s'] or 0:>11.2f} "
            f"{row['median_replayed_wait_s'] or 0:>15.2f}"
        )


if __name__ == "__main__":
    main()
