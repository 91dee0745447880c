"""Time the Philly benchmark replay, policy by policy.

The benchmark: Philly jobs submitted from 2017-10-01 up to 2017-10-15 of the 11
VCs in ``philly_vc.csv`` (24,134 jobs) on a quarter-size cluster (88 nodes, 704
GPUs), default preemption cost. Target: <= 30 s per policy. ``--quick`` replays
two weekdays through ``fifo`` and ``mosu`` (CI). Skips with a message when the shared
traces are absent.

    .venv/bin/python bench/bench_replay.py [--quick] [--policy NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mosu.engine.profiles import PROFILES, build_profile
from mosu.sim.metrics import summarize
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces import philly

PHILLY = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "philly"
TARGET_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two days, two policies (CI)")
    parser.add_argument("--policy", action="append", help=f"one of {', '.join(PROFILES)}")
    args = parser.parse_args()
    if not (PHILLY / "philly.csv").exists():
        print(json.dumps({"skipped": f"no Philly trace at {PHILLY.resolve()}"}))
        return
    start, end = ("2017-10-02", "2017-10-04") if args.quick else ("2017-10-01", "2017-10-15")
    names = args.policy or (["fifo", "mosu"] if args.quick else list(PROFILES))
    vcs = philly.load_vcs(PHILLY / "philly_vc.csv")
    jobs, _ = philly.select(philly.load_jobs(PHILLY / "philly.csv"), vcs=vcs, start=start, end=end)
    tenants, nodes = philly.build_cluster(vcs, scale=0.25)
    results = {}
    for name in names:
        t0, c0 = time.perf_counter(), time.process_time()
        result = replay(jobs, tenants, nodes, build_profile(name), ReplayConfig())
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        summary = summarize(result.log)
        results[name] = {
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "cycles": result.cycles,
            "ms_per_cycle": round(1000 * cpu / max(1, result.cycles), 3),
            "avg_jct_s": summary["avg_jct_s"],
        }
    print(
        f"{'policy':<14}{'wall s':>8}{'cpu s':>8}{'cycles':>8}{'cpu ms/cycle':>13}{'avg JCT s':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:<14}{r['seconds']:>8.1f}{r['cpu_seconds']:>8.1f}{r['cycles']:>8}"
            f"{r['ms_per_cycle']:>13.2f}{r['avg_jct_s']:>12,.0f}"
        )
    print(
        json.dumps(
            {
                "jobs": len(jobs),
                "nodes": len(nodes),
                "window": [start, end],
                "target_s": TARGET_S,
                "policies": results,
                # CPU time is what one idle core would take; wall time also counts
                # waiting for a CPU on a shared machine.
                "ok": all(r["cpu_seconds"] <= TARGET_S for r in results.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
