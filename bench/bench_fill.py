"""Time one fill run (one policy, one seed) per policy on the openb cluster.

Target: every policy under 5 s for the ~10.8k pods of openb_pod_list_default on
1,213 nodes. ``--quick`` runs one seed of random, fgd and mosu (CI).

    .venv/bin/python bench/bench_fill.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from mosu.core.models import Node, Shape
from mosu.engine.policies import FILL_PLACEMENTS
from mosu.sim.fill import run_fill
from mosu.traces.openb import load_nodes, load_pods
from mosu.traces.schema import TraceJob

OPENB = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "alibaba-gpu-v2023-openb"


def openb_or_synthetic(
    pods_file: str = "openb_pod_list_default.csv",
) -> tuple[str, list[Node], list[TraceJob]]:
    """The openb cluster and pod list when ../shared/traces is there, else a seeded
    synthetic stand-in of the same size and mix."""
    if (OPENB / pods_file).is_file():
        return (
            f"openb {pods_file}",
            load_nodes(OPENB / "openb_node_list_gpu_node.csv"),
            load_pods(OPENB / pods_file),
        )
    return "synthetic (openb traces absent)", *synthetic(1213, 8152, seed=1)


def synthetic(n_nodes: int, n_pods: int, seed: int) -> tuple[list[Node], list[TraceJob]]:
    rng = random.Random(seed)
    kinds = [("G2", 8, 96_000, 393_216), ("T4", 2, 104_000, 524_288), ("P100", 2, 16_000, 122_880)]
    nodes = []
    for k in range(n_nodes):
        gpu_type, gpus, cpu, mem = rng.choices(kinds, weights=[5, 3, 1])[0]
        nodes.append(Node(f"node-{k}", gpu_type, gpus, cpu, mem, rack=f"rack-{k // 20}"))
    pods = []
    for k in range(n_pods):
        gpus = rng.choices([0, 1, 1, 2, 4, 8], weights=[13, 48, 38, 0.2, 0.2, 0.6])[0]
        milli = rng.choice([1000, 810, 470, 320, 650, 230]) if gpus == 1 else 1000
        shape = Shape(
            gpus=gpus,
            gpu_milli=milli if gpus else 0,
            cpu_milli=rng.choice([2000, 4000, 6000, 8000, 12000, 16000, 32000]),
            mem_mib=rng.choice([4096, 8192, 16384, 32768, 65536]),
        )
        pods.append(TraceJob(f"pod-{k}", "t", 0.0, None, shape))
    return nodes, pods


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def report(name: str, payload: dict, rows: list[dict], columns: list[str]) -> None:
    """Print the JSON payload, then a plain table of ``rows``."""
    print(json.dumps({"bench": name, **payload, "rows": rows}, indent=1))
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="three policies (CI)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    source, nodes, pods = openb_or_synthetic()
    policies = ["random", "fgd", "mosu"] if args.quick else list(FILL_PLACEMENTS)
    rows = []
    for name in policies:
        run, wall, cpu = timed(lambda name=name: run_fill(nodes, pods, name, args.seed))
        n = len(run.arrived_milli)
        rows.append(
            {
                "policy": name,
                "pods": n,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "decisions_per_s": round(n / wall),
                "unallocated_pct_at_100": round(run.unallocated_pct_at_100, 2),
                "under_target": cpu <= TARGET_S,
            }
        )
    report(
        "fill",
        {"input": source, "nodes": len(nodes), "seed": args.seed, "target_s": TARGET_S},
        rows,
        ["policy", "pods", "wall_s", "cpu_s", "decisions_per_s", "unallocated_pct_at_100"],
    )


if __name__ == "__main__":
    main()
