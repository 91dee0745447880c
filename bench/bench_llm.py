"""LLM-era workloads side by side: Kalos-shaped gangs at three loads, and Seren.

Replays the Kalos-shaped workload of ``synthetic.generate_kalos`` (three labs
guaranteed 512 / 256 / 256 of 1,024 A100s, gangs up to 1,024 GPUs, pretraining
and fine-tuning jobs declaring their own checkpoint interval) at offered loads
0.7, 0.9 and 1.1, and the Seren-shaped workload of ``synthetic.generate`` at 0.9,
through ``las``, ``kueue``, ``drf`` and ``mosu`` under the realistic preemption
cost: work since the job's last checkpoint is lost (its declared interval, else
every 30 minutes) and a restart costs 60 s.

Per policy: average JCT, p99 queueing of gangs of at least 256 GPUs, GPU
utilization and useful utilization (less the work preemptions threw away),
GPU-hours lost to preemption (and their share of the GPU-hours used), GPU-hours
idle while jobs waited and, within that, idle on nodes held by backfill
reservations, each tenant's quota attainment (Seren: the lowest) and the lowest
attainment counted for the jobs that fit within their tenant's guarantee,
and the preemptions by reason with the victims' and preemptors' sizes. Every
number comes from ``sim.metrics``.

``--quick`` (CI): one day on 256 GPUs (30 companies for Seren). Full: seven days
on 1,024 GPUs, one seed.

    .venv/bin/python bench/bench_llm.py [--quick] [--seed N] [--policy NAME ...]
        [--load X ...] [--days D] [--workload kalos|seren ...]

``--load``, ``--days`` and ``--workload`` run a part of it (one load, fewer days,
one workload) while working on a policy; a recorded run takes the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

from mosu.core.models import GPU_MILLI, Tenant
from mosu.engine.profiles import build_profile
from mosu.sim import metrics
from mosu.sim.replay import ReplayConfig, ReplayResult, replay
from mosu.traces import native, synthetic
from mosu.traces.schema import TraceJob

POLICIES = ("las", "kueue", "drf", "mosu")
KALOS_LOADS = (0.7, 0.9, 1.1)
SEREN_LOAD = 0.9
BIG_GANG_GPUS = 256
"""Large gangs: the p99 queueing of jobs of at least this many GPUs is reported apart."""
SMALL_JOB_GPUS = 64
"""A preemptor below this size is a small job displacing a large gang."""


def _preemption_profile(result: ReplayResult, jobs: dict[str, TraceJob]) -> dict[str, Any]:
    """Preemptions by reason, how many hit a gang >= BIG_GANG_GPUS, and how many of
    those were for a job below SMALL_JOB_GPUS (from the decision log)."""
    by_reason: Counter[str] = Counter()
    big_victims = big_for_small = 0
    for line in result.decisions:
        parts = line.split()
        if len(parts) < 5 or parts[1] != "preempt":
            continue
        victim, reason, for_job = parts[2], parts[3], parts[4]
        by_reason[reason] += 1
        gpus = jobs[victim].shape.gpus * jobs[victim].replicas
        if gpus >= BIG_GANG_GPUS:
            big_victims += 1
            other = jobs.get(for_job)
            if other is not None and other.shape.gpus * other.replicas < SMALL_JOB_GPUS:
                big_for_small += 1
    return {
        "by_reason": dict(sorted(by_reason.items())),
        "big_gang_victims": big_victims,
        "big_gang_for_small_job": big_for_small,
    }


def _lost_by_size(result: ReplayResult) -> dict[str, float]:
    """GPU-hours lost, split at BIG_GANG_GPUS."""
    big = sum(o.lost_gpu_s for o in result.log.outcomes if o.gpu_milli >= BIG_GANG_GPUS * GPU_MILLI)
    total = metrics.preemption_cost_gpu_s(result.log.outcomes)
    return {"big_gangs": round(big / 3600, 1), "others": round((total - big) / 3600, 1)}


def _row(result: ReplayResult, jobs: dict[str, TraceJob], seconds: float) -> dict[str, Any]:
    log = result.log
    summary = metrics.summarize(log)
    lost = metrics.preemption_cost_gpu_s(log.outcomes)
    share = metrics.preemption_loss_share(log)
    attainment = metrics.quota_attainment(log)
    within = metrics.attainment_within_guarantee(log)
    return {
        "avg_jct_s": summary["avg_jct_s"],
        "big_gang_p99_queue_s": metrics.large_gang_p99_queue_s(log.outcomes, BIG_GANG_GPUS),
        "utilization": summary["utilization"],
        "useful_utilization": metrics.useful_utilization(log),
        "used_gpu_h": round(metrics.allocated_gpu_s(log) / 3600, 1),
        "lost_gpu_h": round(lost / 3600, 1),
        "lost_share": share,
        "idle_while_waiting_gpu_h": round(metrics.idle_while_waiting_gpu_s(log) / 3600, 1),
        "idle_while_reserved_gpu_h": round(metrics.idle_while_reserved_gpu_s(log) / 3600, 1),
        "min_attainment": summary["quota_attainment"],
        "attainment": attainment,
        "min_attainment_within": min((a for a in within.values() if a is not None), default=None),
        "attainment_within": within,
        "unfinished": summary["unfinished"],
        "preemptions": summary["preemptions"],
        "preemption_profile": _preemption_profile(result, jobs),
        "lost_gpu_h_by_size": _lost_by_size(result),
        "cycles": result.cycles,
        "cpu_seconds": round(seconds, 1),
    }


def _run(
    tenants: list[Tenant], jobs: list[TraceJob], policies: list[str]
) -> dict[str, dict[str, Any]]:
    nodes = native.default_cluster(tenants)
    by_id = {j.id: j for j in jobs}
    rows = {}
    for name in policies:
        c0 = time.process_time()
        result = replay(jobs, tenants, nodes, build_profile(name), ReplayConfig())
        rows[name] = _row(result, by_id, time.process_time() - c0)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'policy':<8}{'avg JCT s':>11}{'p99 q>=256 s':>14}{'util':>7}{'useful':>7}"
        f"{'lost GPU-h':>12}"
        f"{'lost %':>8}{'idle-wait GPU-h':>17}{'idle-resv GPU-h':>17}{'attainment':>30}"
        f"{'within':>8}{'unfin':>6}"
    )
    for name, r in rows.items():
        att = r["attainment"]
        if len(att) <= 4:
            shown = " ".join(f"{_fmt(a, '.3f')}" for a in att.values())
        else:
            shown = f"min {_fmt(r['min_attainment'], '.3f')}"
        print(
            f"{name:<8}{_fmt(r['avg_jct_s'], ',.0f'):>11}"
            f"{_fmt(r['big_gang_p99_queue_s'], ',.0f'):>14}"
            f"{_fmt(r['utilization'], '.3f'):>7}{_fmt(r['useful_utilization'], '.3f'):>7}"
            f"{r['lost_gpu_h']:>12,.0f}"
            f"{_fmt(None if r['lost_share'] is None else 100 * r['lost_share'], '.2f'):>8}"
            f"{r['idle_while_waiting_gpu_h']:>17,.0f}{r['idle_while_reserved_gpu_h']:>17,.0f}"
            f"{shown:>30}{_fmt(r['min_attainment_within'], '.3f'):>8}{r['unfinished']:>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one day on 256 GPUs (CI)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", action="append", help=f"default: {', '.join(POLICIES)}")
    parser.add_argument(
        "--load",
        type=float,
        action="append",
        help=f"Kalos-shaped loads (default: {', '.join(map(str, KALOS_LOADS))})",
    )
    parser.add_argument("--days", type=float, help="days of arrivals (default: 7, --quick 1)")
    parser.add_argument(
        "--workload",
        action="append",
        choices=("kalos", "seren"),
        help="default: both",
    )
    args = parser.parse_args()
    policies = args.policy or list(POLICIES)
    days, gpus, companies = (1.0, 256, 30) if args.quick else (7.0, 1024, 120)
    if args.days is not None:
        days = args.days
    workloads = set(args.workload or ("kalos", "seren"))
    out: dict[str, Any] = {
        "seed": args.seed,
        "days": days,
        "gpus": gpus,
        "preemption": "declared checkpoint interval, else 1,800 s; 60 s restart",
        "workloads": {},
    }
    for load in (args.load or KALOS_LOADS) if "kalos" in workloads else ():
        tenants, jobs = synthetic.generate_kalos(args.seed, days=days, gpus=gpus, load=load)
        rows = _run(tenants, jobs, policies)
        key = f"kalos@{load}"
        out["workloads"][key] = {"jobs": len(jobs), "policies": rows}
        _print(f"{key}: {len(jobs):,} jobs, {len(tenants)} tenants, {gpus} GPUs", rows)
    if "seren" in workloads:
        tenants, jobs = synthetic.generate(
            args.seed, days=days, gpus=gpus, load=SEREN_LOAD, companies=companies
        )
        rows = _run(tenants, jobs, policies)
        key = f"seren@{SEREN_LOAD}"
        out["workloads"][key] = {"jobs": len(jobs), "policies": rows}
        _print(f"{key}: {len(jobs):,} jobs, {len(tenants)} tenants, {gpus} GPUs", rows)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
