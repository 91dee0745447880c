"""How well start-time estimates hold on the Philly benchmark, policy by policy.

The benchmark of ``bench_replay.py`` (Philly jobs submitted 2017-10-01 up to
2017-10-15 of the 11 VCs, quarter-size cluster, default preemption cost), replayed
under ``mosu``, ``kueue`` and ``fifo-backfill``. Every job's estimate made in the
cycle of its arrival is compared with its real start (``sim.metrics.eta_accuracy``:
jobs that waited at least 60 s). Goal for ``mosu``: within a factor of two for at
least 70 % of those jobs, late bound held for at least 90 %. ``--quick`` replays
2017-10-11 to 2017-10-13 (CI): two busy days, when mosu too makes jobs wait.
``--decisions DIR`` writes each policy's decision log there, to check with ``cmp``
that estimates change no decision. Skips with a message when the
shared traces are absent.

    .venv/bin/python bench/bench_eta.py [--quick] [--policy NAME ...] [--decisions DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mosu.engine.profiles import PROFILES, build_profile
from mosu.sim.metrics import eta_accuracy
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces import philly

PHILLY = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "philly"
POLICIES = ("mosu", "kueue", "fifo-backfill")
GOAL = {"within_factor_2": 0.70, "late_bound_held": 0.90}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two days (CI)")
    parser.add_argument("--policy", action="append", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--decisions", type=Path, help="write decision logs to this directory")
    args = parser.parse_args()
    if not (PHILLY / "philly.csv").exists():
        print(json.dumps({"skipped": f"no Philly trace at {PHILLY.resolve()}"}))
        return
    start, end = ("2017-10-11", "2017-10-13") if args.quick else ("2017-10-01", "2017-10-15")
    names = args.policy or list(POLICIES)
    vcs = philly.load_vcs(PHILLY / "philly_vc.csv")
    jobs, _ = philly.select(philly.load_jobs(PHILLY / "philly.csv"), vcs=vcs, start=start, end=end)
    tenants, nodes = philly.build_cluster(vcs, scale=0.25)
    results = {}
    for name in names:
        c0 = time.process_time()
        result = replay(jobs, tenants, nodes, build_profile(name), ReplayConfig())
        eta = eta_accuracy(result.log.outcomes)
        eta["cpu_seconds"] = round(time.process_time() - c0, 2)
        results[name] = eta
        if args.decisions is not None:
            args.decisions.mkdir(parents=True, exist_ok=True)
            (args.decisions / f"decisions-{name}.log").write_text(
                "\n".join(result.decisions) + "\n"
            )
    print(
        f"{'policy':<14}{'jobs':>6}{'median err s':>13}{'p90 err s':>11}"
        f"{'within x2':>11}{'late held':>11}{'unknown':>9}{'cpu s':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<14}{r['jobs']:>6}{_secs(r['median_abs_error_s']):>13}"
            f"{_secs(r['p90_abs_error_s']):>11}{_pct(r['within_factor_2']):>11}"
            f"{_pct(r['late_bound_held']):>11}{_pct(r['unknown']):>9}{r['cpu_seconds']:>7.1f}"
        )
    mosu = results.get("mosu")
    print(
        json.dumps(
            {
                "jobs": len(jobs),
                "nodes": len(nodes),
                "window": [start, end],
                "goal": GOAL,
                "policies": results,
                "goal_met": None
                if mosu is None or not mosu["jobs"]
                else all((mosu[k] or 0.0) >= v for k, v in GOAL.items()),
            }
        )
    )


if __name__ == "__main__":
    main()
