"""What it costs to start a replica under a supervisor, side by side with how replicas
were started before supervisors (one ``Popen`` in the server), in one run.

Each sample starts a one-replica job running ``/bin/true`` and times the executor's
``start`` until it returns the replica's pid (what the scheduling loop waits for before
the job is ``running``); the exit is collected untimed before the next sample. Modes
are interleaved sample by sample, so a busy moment of the machine hits them alike:

- ``popen``: the server forks the command itself (new session, log file, the server's
  environment minus ``MOSU_*``), as the local executor did before supervisors;
- ``supervisor``: a supervisor process per replica, no sandbox (``none``), no cgroup;
- ``+ sandbox``: the same, as the tenant's own Unix user (root) or under bubblewrap;
- ``+ cgroup``: sandbox and a cgroup per replica;
- ``+ waiting supervisors``: the same with supervisors started ahead of need (what
  ``mosu up`` and ``mosu server`` run): a start hands its spec to one that is ready.

Prints a table and a JSON object with p50/p90/max in milliseconds and each mode's p50 as
a multiple of ``popen``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.sandbox import SandboxConfig, resolve
from mosu.core.api import JobLaunch, ReplicaLaunch


def _launch(root: Path, job_id: int) -> JobLaunch:
    return JobLaunch(
        job_id=job_id,
        attempt=1,
        tenant="bench",
        argv=["/bin/true"],
        env={},
        workdir=None,
        replicas=[
            ReplicaLaunch(
                replica=0,
                node="n0",
                gpu_indices=[0],
                gpu_milli=1000,
                log_path=str(root / "logs" / str(job_id) / "replica-0.log"),
                run_dir=str(root / "logs" / str(job_id) / "run" / "1.0"),
            )
        ],
    )


def _popen_start(launch: JobLaunch) -> Callable[[], None]:
    """The pre-supervisor start: fork and exec from the server; returns a waiter."""
    r = launch.replicas[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
    env.update(launch.env, CUDA_VISIBLE_DEVICES="0", MOSU_JOB_ID=str(launch.job_id))
    log = Path(r.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            launch.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return lambda: proc.wait()


def _executor_start(ex: LocalExecutor) -> Callable[[JobLaunch], Callable[[], None]]:
    def start(launch: JobLaunch) -> Callable[[], None]:
        ex.start(launch)

        def wait() -> None:
            deadline = time.monotonic() + 60
            while not ex.poll():
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {launch.job_id} did not end")
                time.sleep(0.005)

        return wait

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    samples = 5 if args.quick else args.samples
    root = Path(tempfile.mkdtemp(prefix="mosu-bench-launch-"))
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        boxed = resolve("auto", home_root=None, fallback_home_root=root / "homes")
    except Exception as exc:  # no sandbox here: measure what can be measured
        print(f"no sandbox on this machine ({exc}); sandboxed modes skipped", file=sys.stderr)
        boxed = None
    bare = SandboxConfig(mode="none", home_root=str(root / "homes"))
    modes: dict[str, Callable[[JobLaunch], Callable[[], None]]] = {"popen": _popen_start}
    modes["supervisor"] = _executor_start(
        LocalExecutor(instance=instance, sandbox=bare, cgroup="none")
    )
    if boxed is not None:
        modes[f"+ sandbox ({boxed.mode})"] = _executor_start(
            LocalExecutor(instance=instance, sandbox=boxed, cgroup="none")
        )
        tracked = LocalExecutor(instance=instance, sandbox=boxed, cgroup="auto")
        modes[f"+ cgroup ({tracked.tracking().split(' (')[0]})"] = _executor_start(tracked)
        warm = LocalExecutor(
            instance=instance, sandbox=boxed, cgroup="auto", pool_dir=root / "supervisors"
        )
        modes["+ waiting supervisors"] = _executor_start(warm)  # its poll refills the pool
    times: dict[str, list[float]] = {m: [] for m in modes}
    job_id = 0
    try:
        for _ in range(samples + 1):  # the first round warms up and is not counted
            for mode, start in modes.items():
                job_id += 1
                launch = _launch(root, job_id)
                began = time.perf_counter()
                wait = start(launch)
                took = time.perf_counter() - began
                wait()
                if job_id > len(modes):
                    times[mode].append(took * 1000)
    finally:
        if boxed is not None:
            warm.shutdown(grace_s=0.0)  # ends the supervisors still waiting
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(times["popen"])
    rows = []
    for mode, ms in times.items():
        ordered = sorted(ms)
        rows.append(
            {
                "mode": mode,
                "samples": len(ms),
                "p50_ms": round(statistics.median(ms), 2),
                "p90_ms": round(ordered[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))], 2),
                "max_ms": round(max(ms), 2),
                "p50_vs_popen": round(statistics.median(ms) / base, 1),
            }
        )
    print(f"{'mode':<28}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}{'x popen':>10}")
    for r in rows:
        print(
            f"{r['mode']:<28}{r['p50_ms']:>10}{r['p90_ms']:>10}{r['max_ms']:>10}"
            f"{r['p50_vs_popen']:>10}"
        )
    print(json.dumps({"bench": "launch", "quick": args.quick, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
