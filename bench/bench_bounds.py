"""How low average JCT can go on the Philly benchmark, with and without guarantees.

Replays the benchmark (free preemption, as the Tiresias simulator assumes) through
references that know every job's true remaining time, next to ``las`` and
``mosu``:

- ``srtf-pool`` / ``srtf-gpu-pool``: one shared pool, guarantees ignored, any job
  preemptible by one with less remaining time (``srtf-gpu``: less remaining
  GPU-time, the oracle counterpart of 2D-LAS);
- ``srtf-guarantees`` / ``srtf-gpu-guarantees``: the same orderings under mosu's
  tenancy rules (guarantees kept, idle capacity lent, only borrowed capacity or a
  tenant's own jobs preemptible).

Two cluster models: ``nodes`` (88 nodes of 8 GPUs, as every other benchmark) and
``count`` (one node holding all 704 GPUs: GPUs are counted, never fragmented, as in
the Tiresias simulator's ``count`` placement; backfill is skipped there, as a
reservation would hold the one node). A policy without oracle knowledge
that keeps the guarantees cannot be expected below the ``*-guarantees`` rows.

``--realistic`` charges mosu's default preemption cost instead (work since the last
checkpoint lost: the job's declared interval, else 30 minutes; 60 s restart).
``--quick`` replays two weekdays on a twentieth-size cluster (23 nodes) through the
two-dimensional oracle pair (CI). Skips with a message when the shared traces are
absent.

``--workload kalos`` replays the Kalos-shaped workload of ``bench/bench_llm.py``
instead (seven days on 1,024 GPUs, seed 1, at each ``--load``, default 0.9; under
free preemption without the jobs' declared checkpoint intervals) on the
node model through ``las`` and the two guarantee-keeping oracles (``mosu``'s rows
are ``bench_llm``'s); its rows add the figures ``bench_llm`` reports (p99 queueing
of gangs of 256 GPUs or more, utilization, share of GPU-time lost).

    .venv/bin/python bench/bench_bounds.py [--quick] [--realistic]
        [--workload philly|kalos] [--load X ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mosu.core.models import Node
from mosu.engine.ordering import QueueOrder, ShortestRemainingServiceOracle
from mosu.engine.profiles import (
    LendOrder,
    QueueMode,
    QuotaMode,
    RankPreemption,
    SchedulingProfile,
    VictimOrder,
    build_profile,
)
from mosu.sim import metrics
from mosu.sim.metrics import summarize
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces import native, philly, synthetic

PHILLY = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "philly"
FREE = ReplayConfig(checkpoint_every_s=0, restart_overhead_s=0)


POOL = {
    "quotas": QuotaMode.SHARED,
    "queue_mode": QueueMode.SKIP,
    "rank_preemption": RankPreemption.ANY,
}
"""One shared pool: guarantees ignored, any worse-ranked job preemptible."""
GUARANTEES = {
    "quotas": QuotaMode.BORROW,
    "queue_mode": QueueMode.BACKFILL,
    "reclaim": True,
    "rank_preemption": RankPreemption.BORROWED,
    "victim_order": VictimOrder.SERVED,
    "lend_order": LendOrder.QUEUE,
}
"""mosu's tenancy rules: guarantees kept, idle capacity lent and reclaimed, only
borrowed capacity (or a tenant's own jobs) preemptible. Idle capacity is lent in
rank order, not fair-share order: with true remaining times that is what lowers
average JCT most (9,093 s against 9,100 s for ``srtf-gpu-guarantees``)."""


def _oracle(
    name: str, rules: dict[str, Any], ordering: QueueOrder | None = None
) -> SchedulingProfile:
    """``srtf-oracle`` (true remaining time, free of minimum runtime) under ``rules``."""
    profile = replace(build_profile("srtf-oracle"), name=name, **rules)
    return profile if ordering is None else replace(profile, ordering=ordering)


VARIANTS: dict[str, Callable[[], SchedulingProfile]] = {
    "las": lambda: build_profile("las"),
    "srtf-pool": lambda: _oracle("srtf-pool", POOL),
    "srtf-gpu-pool": lambda: _oracle("srtf-gpu-pool", POOL, ShortestRemainingServiceOracle()),
    "srtf-guarantees": lambda: _oracle("srtf-guarantees", GUARANTEES),
    "srtf-gpu-guarantees": lambda: _oracle(
        "srtf-gpu-guarantees", GUARANTEES, ShortestRemainingServiceOracle()
    ),
    "mosu": lambda: build_profile("mosu"),
}
COUNT_MODEL = ("las", "srtf-gpu-pool", "srtf-gpu-guarantees", "mosu")
"""Also run on the count model. There, profiles with backfill skip it instead: a
reservation names nodes, and on one node it would hold the whole cluster."""


def one_pool(nodes: list[Node]) -> list[Node]:
    """The same GPUs, CPU and memory as one node."""
    first = nodes[0]
    return [
        Node(
            name="pool",
            gpu_type=first.gpu_type,
            gpus=sum(n.gpus for n in nodes),
            cpu_milli=sum(n.cpu_milli for n in nodes),
            mem_mib=sum(n.mem_mib for n in nodes),
        )
    ]


KALOS_VARIANTS = ("las", "srtf-guarantees", "srtf-gpu-guarantees")
KALOS_BIG_GANG_GPUS = 256


def kalos(loads: list[float], config: ReplayConfig) -> dict[str, Any]:
    """The Kalos-shaped workload at each load through ``KALOS_VARIANTS``. Under free
    preemption the jobs' declared checkpoint intervals go too: a preemption loses
    nothing."""
    out: dict[str, Any] = {}
    for load in loads:
        tenants, jobs = synthetic.generate_kalos(1, days=7.0, gpus=1024, load=load)
        if config == FREE:
            jobs = [replace(j, checkpoint_every_s=None) for j in jobs]
        nodes = native.default_cluster(tenants)
        rows: dict[str, dict[str, float | int | None]] = {}
        for name in KALOS_VARIANTS:
            c0 = time.process_time()
            result = replay(jobs, tenants, nodes, VARIANTS[name](), config)
            log = result.log
            summary = summarize(log)
            within = metrics.attainment_within_guarantee(log)
            rows[name] = {
                "avg_jct_s": summary["avg_jct_s"],
                "big_gang_p99_queue_s": metrics.large_gang_p99_queue_s(
                    log.outcomes, KALOS_BIG_GANG_GPUS
                ),
                "utilization": summary["utilization"],
                "lost_share": metrics.preemption_loss_share(log),
                "min_quota_attainment": summary["quota_attainment"],
                "min_attainment_within": min(
                    (a for a in within.values() if a is not None), default=None
                ),
                "preemptions": summary["preemptions"],
                "unfinished": summary["unfinished"],
                "cpu_seconds": round(time.process_time() - c0, 1),
            }
        out[f"kalos@{load}"] = {"jobs": len(jobs), "policies": rows}
    return out


def _print_kalos(workloads: dict[str, Any]) -> None:
    print(
        f"{'workload':<11}{'policy':<21}{'avg JCT s':>11}{'p99 q>=256 s':>14}{'util':>7}"
        f"{'lost %':>8}{'within':>8}{'preemptions':>13}"
    )
    for key, w in workloads.items():
        for name, r in w["policies"].items():
            lost = r["lost_share"]
            within = r["min_attainment_within"]
            print(
                f"{key:<11}{name:<21}{r['avg_jct_s'] or 0:>11,.0f}"
                f"{r['big_gang_p99_queue_s'] or 0:>14,.0f}{r['utilization']:>7.3f}"
                f"{100 * lost if lost is not None else float('nan'):>8.2f}"
                f"{within if within is not None else float('nan'):>8.3f}{r['preemptions']:>13}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two days, node model (CI)")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="mosu's default preemption cost (work since the last 30-min checkpoint is lost, "
        "60 s restart) instead of free preemption",
    )
    parser.add_argument("--workload", choices=("philly", "kalos"), default="philly")
    parser.add_argument(
        "--load", type=float, action="append", help="Kalos-shaped loads (default: 0.9)"
    )
    args = parser.parse_args()
    config = ReplayConfig() if args.realistic else FREE
    if args.workload == "kalos":
        workloads = kalos(args.load or [0.9], config)
        _print_kalos(workloads)
        preemption = "realistic" if args.realistic else "free"
        print(json.dumps({"preemption": preemption, "workloads": workloads}))
        return
    if not (PHILLY / "philly.csv").exists():
        print(json.dumps({"skipped": f"no Philly trace at {PHILLY.resolve()}"}))
        return
    start, end = ("2017-10-02", "2017-10-04") if args.quick else ("2017-10-01", "2017-10-15")
    vcs = philly.load_vcs(PHILLY / "philly_vc.csv")
    jobs, _ = philly.select(philly.load_jobs(PHILLY / "philly.csv"), vcs=vcs, start=start, end=end)
    # Two days on a quarter-size cluster hardly queue; a twentieth makes them contend.
    tenants, nodes = philly.build_cluster(vcs, scale=0.05 if args.quick else 0.25)
    runs: list[tuple[str, str]] = [("nodes", name) for name in VARIANTS]
    runs += [("count", name) for name in COUNT_MODEL]
    if args.quick:
        runs = [("nodes", "srtf-gpu-pool"), ("nodes", "srtf-gpu-guarantees")]
    mean_run_s = sum(j.duration_s or 0.0 for j in jobs) / len(jobs)
    results: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for model, name in runs:
        profile = VARIANTS[name]()
        cluster = nodes
        if model == "count":
            cluster = one_pool(nodes)
            if profile.queue_mode == QueueMode.BACKFILL:
                profile = replace(profile, queue_mode=QueueMode.SKIP)
        c0 = time.process_time()
        result = replay(jobs, tenants, cluster, profile, config)
        summary = summarize(result.log)
        results.setdefault(model, {})[name] = {
            "avg_jct_s": summary["avg_jct_s"],
            "min_quota_attainment": summary["quota_attainment"],
            "preemptions": summary["preemptions"],
            "cpu_seconds": round(time.process_time() - c0, 1),
        }
    print(f"{'model':<7}{'policy':<21}{'avg JCT s':>11}{'min attainment':>16}{'preemptions':>13}")
    for model, by_name in results.items():
        for name, r in by_name.items():
            attainment = r["min_quota_attainment"]
            print(
                f"{model:<7}{name:<21}{r['avg_jct_s'] or 0:>11,.0f}"
                f"{attainment if attainment is not None else float('nan'):>16.3f}"
                f"{r['preemptions']:>13}"
            )
    print(
        json.dumps(
            {
                "jobs": len(jobs),
                "window": [start, end],
                "nodes": len(nodes),
                "mean_run_s": round(mean_run_s, 1),
                "preemption": "realistic" if args.realistic else "free",
                "models": results,
            }
        )
    )


if __name__ == "__main__":
    main()
