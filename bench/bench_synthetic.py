"""Generate a synthetic incubator week and compare it with the Acme Seren targets.

``generate(7)`` with the defaults (120 companies, 7 days, 1,024 GPUs): how long it
takes, and the calibration table of docs/traces.md: Seren's published statistics,
the mixture's exact expectations (``job_mix_statistics``) and the sample's. Also the
share of GPU-seconds the five largest companies submit. ``--quick`` generates one day
(CI).

    .venv/bin/python bench/bench_synthetic.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

from mosu.traces import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one day instead of seven (CI)")
    args = parser.parse_args()
    days = 1.0 if args.quick else 7.0
    t0, c0 = time.perf_counter(), time.process_time()
    tenants, jobs = synthetic.generate(7, days=days)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    runs = [j.duration_s or 0.0 for j in jobs]
    gpus = [j.shape.gpus * j.replicas for j in jobs]
    gpu_s = Counter[str]()
    for j, run, g in zip(jobs, runs, gpus, strict=True):
        gpu_s[j.tenant] += run * g
    top5 = sum(v for _, v in gpu_s.most_common(5)) / max(sum(gpu_s.values()), 1e-9)
    mix = synthetic.job_mix_statistics()
    target = {
        "median_run_s": synthetic.SEREN_MEDIAN_RUN_S,
        "mean_run_s": synthetic.SEREN_MEAN_RUN_S,
        "median_gpus": synthetic.SEREN_MEDIAN_GPUS,
        "mean_gpus": synthetic.SEREN_MEAN_GPUS,
        "max_gpus": float(synthetic.SEREN_MAX_GPUS),
        "mean_gpu_s": synthetic.SEREN_MEAN_GPU_S,
    }
    sample = {
        "median_run_s": statistics.median(runs),
        "mean_run_s": statistics.fmean(runs),
        "median_gpus": statistics.median(gpus),
        "mean_gpus": statistics.fmean(gpus),
        "max_gpus": float(max(gpus)),
        "mean_gpu_s": statistics.fmean(r * g for r, g in zip(runs, gpus, strict=True)),
    }
    rows = [
        {
            "statistic": name,
            "seren_target": round(target[name], 2),
            "mixture_exact": round(mix[name], 2),
            "sample": round(sample[name], 2),
        }
        for name in target
    ]
    print(f"{'statistic':<14}{'Seren':>12}{'mixture':>12}{'sample':>12}")
    for r in rows:
        print(
            f"{r['statistic']:<14}{r['seren_target']:>12,.1f}"
            f"{r['mixture_exact']:>12,.1f}{r['sample']:>12,.1f}"
        )
    print(
        json.dumps(
            {
                "seed": 7,
                "days": days,
                "companies": len(tenants),
                "jobs": len(jobs),
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "top5_gpu_s_share": round(top5, 3),
                "calibration": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
