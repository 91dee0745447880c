"""Time ``mosu whatif`` on a month of history: each scenario replayed, with its speed over
real time and the process's peak memory.

The history: a seeded synthetic incubator (``traces.synthetic``, 120 companies, H800) of
30 days on 1,000 nodes of 8 GPUs (8,000 GPUs), about 100,000 jobs. At the Acme Seren
calibration 100,000 jobs a month fill only 16 % of 8,000 GPUs, so every run time is
multiplied by ``DURATION_SCALE`` (5.6, clipped at 14 days): the offered load is then
about 0.9, a busy cluster where jobs wait and tenants borrow (the engine is only called while jobs
wait, so an idle cluster would flatter the speed). Each job gets a real start and a
history (its replayed start), as an export would carry, so the what-if's fidelity check
runs too.

Scenarios, each one replay, side by side: as configured, exact (every event at its own
instant) and on 60 s ticks (``--tick 60``); the largest tenant's guarantee doubled and
10 % more nodes, on 60 s ticks. Targets: ≤ 60 s per scenario, ≥ 40,000x real time,
peak memory ≤ 2 GiB; judged on the process's CPU time (the wall time is printed too:
on a shared machine it is mostly waiting for a core). ``--days D`` replays only the
month's first D days (same jobs, tenants and nodes). ``--quick`` (CI): 3 days on 100
nodes. ``--ticks-only`` leaves out the exact replay, which calls the engine at every
instant and over the whole month costs many times the ticked ones.

    .venv/bin/python bench/bench_whatif.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time

from mosu.core.models import GPU_MILLI
from mosu.sim.metrics import tenant_report, wait_error
from mosu.sim.replay import replay
from mosu.sim.whatif import REPLAY_CONFIG, Changes, History, plan_whatif, real_waits
from mosu.traces import native, synthetic
from mosu.traces.schema import Ended, JobHistory

TARGET_S = 60.0
TARGET_SPEEDUP = 40_000.0
TARGET_RSS_GIB = 2.0
DURATION_SCALE = 5.6
MAX_DURATION_S = 14 * 86400.0
"""Scaled run times are clipped where the generator clips unscaled ones."""
SEED = 11


def history_of(days: float, nodes: int) -> History:
    gpus = nodes * 8
    tenants, jobs = synthetic.generate(
        SEED, companies=120, days=days, gpus=gpus, load=0.9 / DURATION_SCALE, gpu_type="H800"
    )
    jobs = [
        dataclasses.replace(
            j,
            duration_s=min(MAX_DURATION_S, (j.duration_s or 0.0) * DURATION_SCALE),
            history=JobHistory(Ended.EXIT),
        )
        for j in jobs
    ]
    return History(tuple(jobs), tuple(tenants), tuple(native.default_cluster(tenants)))


TICK_S = 60.0


def scenarios(history: History) -> dict[str, tuple[Changes, float]]:
    """Name → (changes, tick); the first two are the as-configured replays."""
    top = max(history.tenants, key=lambda t: sum(q.guaranteed_milli for _, q in t.quotas))
    guarantee = sum(q.guaranteed_milli for _, q in top.quotas) / GPU_MILLI
    double = Changes(guarantees=((top.name, "H800", round(2 * guarantee * GPU_MILLI)),))
    more = max(1, len(history.nodes) // 10)
    return {
        "as configured, exact": (double, 0.0),
        f"as configured, {TICK_S:g} s tick": (double, TICK_S),
        f"guarantee {top.name} x2, tick": (double, TICK_S),
        f"+{more} nodes, tick": (Changes(add_nodes=(f"{more}x8:H800",)), TICK_S),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 days, 100 nodes (CI)")
    parser.add_argument(
        "--days", type=float, default=30.0, help="the first DAYS of the month only (full mode)"
    )
    parser.add_argument(
        "--ticks-only",
        action="store_true",
        help="leave out the exact replay (over the whole month it costs many times the rest)",
    )
    args = parser.parse_args()
    days, nodes = (3.0, 100) if args.quick else (30.0, 1000)
    t0 = time.perf_counter()
    history = history_of(days, nodes)
    if not args.quick and args.days < days:
        # The same month's first days: the same jobs, tenants and nodes as the full run.
        kept = tuple(j for j in history.jobs if j.submit_s < args.days * 86400)
        history = dataclasses.replace(history, jobs=kept)
    built_s = time.perf_counter() - t0
    span_s = max(j.submit_s for j in history.jobs) - min(j.submit_s for j in history.jobs)
    results: dict[str, dict] = {}
    first_log = None
    for k, (name, (changes, tick)) in enumerate(scenarios(history).items()):
        if args.ticks_only and not tick:
            continue
        plan = plan_whatif(history, changes, tick_s=tick)
        scenario = plan.base if k < 2 else plan.changed
        t1, c1 = time.perf_counter(), time.process_time()
        result = replay(
            plan.jobs, scenario.tenants, scenario.nodes, scenario.profile, REPLAY_CONFIG
        )
        seconds = time.perf_counter() - t1
        cpu = time.process_time() - c1
        t2 = time.perf_counter()
        report = tenant_report(result.log)
        report_s = time.perf_counter() - t2
        if first_log is None:
            first_log = result.log
        overall = report["overall"]
        results[name] = {
            "replay_s": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "report_s": round(report_s, 2),
            "cycles": result.cycles,
            "tick_s": tick,
            # Over CPU time: on a shared machine the wall time is mostly waiting for a core.
            "x_real_time": round(span_s / cpu) if cpu > 0 else None,
            "x_real_time_wall": round(span_s / seconds) if seconds > 0 else None,
            "avg_wait_s": overall["avg_wait_s"],
            "p95_wait_s": overall["p95_wait_s"],
            "utilization": overall["utilization"],
            "preemptions": overall["preemptions"],
        }
    # The fidelity check over a history whose real starts are the as-configured replay's.
    assert first_log is not None
    starts = {o.job_id: o.first_start_s for o in first_log.outcomes}
    exact = [
        dataclasses.replace(j, history=JobHistory(Ended.EXIT, starts[j.id])) for j in history.jobs
    ]
    t3 = time.perf_counter()
    fidelity = wait_error(first_log, real_waits(exact))
    fidelity_s = time.perf_counter() - t3
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    ticked = [r for r in results.values() if r["tick_s"]]
    exact = [r for r in results.values() if not r["tick_s"]]
    out = {
        "jobs": len(history.jobs),
        "nodes": len(history.nodes),
        "gpus": sum(n.gpus for n in history.nodes),
        "days": round(span_s / 86400, 2),
        "build_s": round(built_s, 2),
        "scenarios": results,
        "fidelity_check_s": round(fidelity_s, 3),
        "fidelity_exact_median_error_s": fidelity["median_error_s"],
        "peak_rss_gib": round(rss_gib, 3),
        "targets": {
            "replay_s": TARGET_S,
            "x_real_time": TARGET_SPEEDUP,
            "rss_gib": TARGET_RSS_GIB,
        },
        "met": {
            f"{kind} cpu_s": max(r["cpu_s"] for r in rs) <= TARGET_S
            for kind, rs in (("exact", exact), ("tick", ticked))
            if rs
        }
        | {
            f"{kind} x_real_time": min(r["x_real_time"] or 0 for r in rs) >= TARGET_SPEEDUP
            for kind, rs in (("exact", exact), ("tick", ticked))
            if rs
        }
        | {"rss_gib": rss_gib <= TARGET_RSS_GIB},
        "quick": args.quick,
    }
    print(json.dumps(out, indent=2))
    print(
        f"{'scenario':<30}{'replay s':>9}{'cpu s':>8}{'cycles':>9}{'x real':>10}"
        f"{'avg wait s':>12}{'util':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<30}{r['replay_s']:>9.1f}{r['cpu_s']:>8.1f}{r['cycles']:>9}"
            f"{r['x_real_time'] or 0:>10,}{r['avg_wait_s'] or 0:>12.0f}"
            f"{r['utilization'] or 0:>7.3f}"
        )
    print(
        f"{len(history.jobs):,} jobs over {out['days']} days on {out['nodes']} nodes; "
        f"peak RSS {rss_gib:.2f} GiB; targets met: {out['met']}"
    )


if __name__ == "__main__":
    main()
