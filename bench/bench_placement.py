"""Placement decision rate and gang placement on large clusters.

1. Decisions per second of each policy's ``place_job`` on the openb cluster
   filled to about 70 % by a fill run (the state is left unchanged by a
   decision, so the same state serves every measured job). Target: >= 2,000/s
   for fgd and mosu.
2. Gang placement: multi-node jobs (2 to 16 replicas of 8 GPUs, no constraint
   and same-rack) placed one after another (placed gangs stay) on a synthetic
   1,000-node, 50-rack cluster that starts half full, per policy: milliseconds
   per gang decision and how many gangs were placed.

    .venv/bin/python bench/bench_placement.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fill import openb_or_synthetic, report, timed
from mosu.core.models import Job, Node, ReplicaPlacement, Shape, Topology
from mosu.engine.placement import place_job
from mosu.engine.placement.taskmix import TaskMix
from mosu.engine.policies import FILL_PLACEMENTS, PolicyContext, make_placement
from mosu.engine.state import ClusterState
from mosu.sim.fill import build_workload, policy_rng

DECISIONS_TARGET = 2000


def decision_rate(policies: list[str], jobs_measured: int) -> tuple[str, list[dict]]:
    source, nodes, pods = openb_or_synthetic()
    mix = TaskMix.observe((p.shape, p.gpu_types) for p in pods)
    rows = []
    for name in policies:
        state = ClusterState(nodes)
        work = build_workload(pods, state.capacity_milli, 1.3, random.Random(42))
        policy = make_placement(name, PolicyContext(task_mix=mix, rng=policy_rng(42)))
        fill_to = 0.7 * state.capacity_milli
        k = 0
        while state.allocated_milli < fill_to and k < len(work):
            placement = place_job(state, work[k].to_job(), policy)
            if placement is not None:
                state.assign(f"w{k}", placement)
            k += 1
        state.commit()
        probe = [p.to_job() for p in work[k : k + jobs_measured]]
        _, wall, cpu = timed(
            lambda state=state, policy=policy, probe=probe: [
                place_job(state, j, policy) for j in probe
            ]
        )
        rows.append(
            {
                "policy": name,
                "decisions": len(probe),
                "wall_s": round(wall, 3),
                "decisions_per_s": round(len(probe) / wall),
                "decisions_per_cpu_s": round(len(probe) / cpu) if cpu else None,
            }
        )
    return source, rows


def gang_cluster(n_nodes: int = 1000, racks: int = 50) -> list[Node]:
    return [
        Node(f"g{k}", "H100", 8, 128_000, 1_048_576, rack=f"r{k % racks}") for k in range(n_nodes)
    ]


def gang_placement(policies: list[str], gangs: int) -> list[dict]:
    rng = random.Random(7)
    nodes = gang_cluster()
    jobs = [
        Job(
            id=f"gang-{k}",
            tenant="t",
            shape=Shape(gpus=8, cpu_milli=32_000, mem_mib=131_072),
            replicas=rng.choice([2, 4, 8, 16]),
            topology=rng.choice([Topology.NONE, Topology.SAME_RACK]),
        )
        for k in range(gangs)
    ]
    mix = TaskMix.observe((j.shape, ()) for j in jobs)
    rows = []
    for name in policies:
        state = ClusterState(nodes)
        # Half the nodes busy, so gangs must search.
        for k in range(0, len(nodes), 2):
            state.assign(f"busy-{k}", (ReplicaPlacement(nodes[k].name, tuple(range(8))),))
        policy = make_placement(name, PolicyContext(task_mix=mix, rng=random.Random(1)))

        def place_all(policy=policy, state=state) -> list[bool]:
            # Placed gangs stay, so later ones search a fuller cluster.
            placed = []
            for j in jobs:
                placement = place_job(state, j, policy)
                if placement is not None:
                    state.assign(j.id, placement)
                placed.append(placement is not None)
            return placed

        placed, wall, _ = timed(place_all)
        rows.append(
            {
                "policy": name,
                "gangs": len(jobs),
                "placed": sum(placed),
                "ms_per_gang": round(1000 * wall / len(jobs), 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer jobs and policies (CI)")
    args = parser.parse_args()
    policies = ["bestfit", "fgd", "mosu"] if args.quick else list(FILL_PLACEMENTS)
    source, rows = decision_rate(policies, 300 if args.quick else 2000)
    report(
        "placement-decisions",
        {"input": source, "target_decisions_per_s": DECISIONS_TARGET},
        rows,
        ["policy", "decisions", "wall_s", "decisions_per_s", "decisions_per_cpu_s"],
    )
    print()
    gang_rows = gang_placement(policies, 20 if args.quick else 100)
    report(
        "gang-placement",
        {"nodes": 1000, "racks": 50, "gpus_per_node": 8},
        gang_rows,
        ["policy", "gangs", "placed", "ms_per_gang"],
    )


if __name__ == "__main__":
    main()
