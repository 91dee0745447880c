"""A seeded store with a month of history, for the dashboard's benchmark and screenshots.

``seed(url, size)`` migrates an empty database and writes, with the store's own row
classes, what a busy incubator leaves behind: tenants of very different sizes with
guarantees and limits, racks of nodes (a few draining or down), running jobs holding
most GPUs (some borrowing, some sharing a GPU), tens of thousands of finished jobs
with their allocations, state events and usage rows, and a deep pending queue with the
reasons and estimated starts a scheduling cycle leaves. Seeded, so every run writes the
same store (times are relative to ``now``).
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import insert

from mosu.core.models import GPU_MILLI
from mosu.service.db.rows import (
    AllocationRow,
    EventRow,
    JobRow,
    NodeRow,
    QuotaRow,
    TenantRow,
    UsageRow,
)
from mosu.service.db.session import make_engine, upgrade
from mosu.service.services.lifecycle import split_by_day

DAY = 86400.0
KINDS = ("train", "finetune", "eval", "batch", "inference", "dev")
GPU_TYPES = (("H800", 0.6), ("A100", 0.3), ("L40S", 0.1))
PENDING_REASONS = (
    ("queued", 0.35, "waiting behind jobs ahead in the fair-share order"),
    ("quota-exceeded", 0.25, "the tenant holds its limit; waits for its own jobs to end"),
    ("no-fit", 0.2, "no node has the GPUs free for one replica"),
    ("blocked-by-reservation", 0.1, "would delay a reserved job"),
    ("reserved", 0.05, "holds a reservation on named nodes"),
    ("waiting-for-guarantee", 0.05, "within its guarantee; waiting for borrowed capacity"),
)


@dataclass(frozen=True)
class Size:
    tenants: int
    nodes: int
    finished: int
    pending: int
    days: int = 30


FULL = Size(tenants=100, nodes=1000, finished=50_000, pending=10_000)
QUICK = Size(tenants=12, nodes=48, finished=2_000, pending=400, days=10)


def _weighted(rng: random.Random, items):  # type: ignore[no-untyped-def]
    return rng.choices([i[0] for i in items], weights=[i[1] for i in items])[0]


def seed(url: str, size: Size, *, now: float | None = None, seed_value: int = 7) -> dict:
    """Write the store; return what was written (counts) and the tenant names."""
    rng = random.Random(seed_value)
    now = time.time() if now is None else now
    engine = make_engine(url)
    upgrade(engine)
    nodes = []
    for i in range(size.nodes):
        gpu_type = _weighted(rng, GPU_TYPES)
        state = "ready"
        roll = rng.random()
        if roll < 0.01:
            state = "down"
        elif roll < 0.03:
            state = "draining"
        nodes.append(
            {
                "name": f"node-{i:04d}",
                "gpu_type": gpu_type,
                "gpus": 8,
                "cpu_milli": 128_000,
                "mem_mib": 1024 * 1024,
                "gpu_mem_mib": 80 * 1024,
                "zone": "zone-0",
                "rack": f"rack-{i // 16:03d}",
                "state": state,
                "created_at": now - size.days * DAY,
            }
        )
    capacity = defaultdict(int)
    for n in nodes:
        capacity[n["gpu_type"]] += n["gpus"]

    # Tenants: Zipf-sized companies; each mostly uses one GPU type.
    names = [f"co-{i:03d}" for i in range(size.tenants)]
    sizes = [1 / (i + 1) ** 0.9 for i in range(size.tenants)]
    total_size = sum(sizes)
    tenants, quotas, primary = [], [], {}
    for name, s in zip(names, sizes, strict=True):
        gpu_type = _weighted(rng, GPU_TYPES)
        primary[name] = gpu_type
        guaranteed = max(1, round(0.75 * capacity[gpu_type] * s / total_size / 0.6))
        tenants.append(
            {
                "name": name,
                "weight": 1.0,
                "created_at": now - size.days * DAY,
                "cohort": None,
            }
        )
        quotas.append(
            {
                "tenant": name,
                "gpu_type": gpu_type,
                "guaranteed_milli": guaranteed * GPU_MILLI,
                "limit_milli": guaranteed * 3 * GPU_MILLI if rng.random() < 0.8 else None,
            }
        )
    tenant_weights = sizes

    jobs, allocations, events = [], [], []
    usage: dict[tuple[str, str, str], float] = defaultdict(float)
    job_id = 0
    by_type = defaultdict(list)
    for n in nodes:
        by_type[n["gpu_type"]].append(n)

    def job_row(tenant, gpu_type, shape, submitted, state, **extra):  # type: ignore[no-untyped-def]
        nonlocal job_id
        job_id += 1
        replicas, gpus, milli = shape
        kind = rng.choice(KINDS)
        row = {
            "id": job_id,
            "tenant": tenant,
            "name": f"{tenant}-{kind}-{job_id}",
            "kind": kind,
            "state": state,
            "version": 1,
            "priority": rng.choice((0, 50, 50, 50, 100)),
            "replicas": replicas,
            "gpus": gpus,
            "gpu_milli": milli,
            "gpu_types": gpu_type if rng.random() < 0.7 else "",
            "cpu_milli": 8000,
            "mem_mib": 65536,
            "topology": "none",
            "estimate_s": None,
            "max_runtime_s": None,
            "checkpoint_every_s": 1800.0,
            "spec": {"name": f"{tenant}-{kind}-{job_id}", "command": ["python", "train.py"]},
            "submitted_at": submitted,
            "started_at": None,
            "finished_at": None,
            "attempts": 0,
            "attained_gpu_s": 0.0,
            "exit_code": None,
            "message": "",
            "stop_reason": None,
            "stop_signalled": False,
            "pending_reason": None,
            "pending_message": None,
            "estimated_start": None,
        }
        row.update(extra)
        jobs.append(row)
        return row

    def event(at, job, from_state, to_state, reason, message=""):  # type: ignore[no-untyped-def]
        events.append(
            {
                "at": at,
                "job_id": job["id"],
                "tenant": job["tenant"],
                "kind": "state",
                "from_state": from_state,
                "to_state": to_state,
                "reason": reason,
                "message": message,
            }
        )

    def shape(rng_: random.Random) -> tuple[int, int, int]:
        roll = rng_.random()
        if roll < 0.08:
            return (1, 1, 500)
        if roll < 0.45:
            return (1, 1, GPU_MILLI)
        if roll < 0.65:
            return (1, 2, GPU_MILLI)
        if roll < 0.8:
            return (1, 4, GPU_MILLI)
        if roll < 0.93:
            return (1, 8, GPU_MILLI)
        return (rng_.choice((2, 4)), 8, GPU_MILLI)

    def add_attempt(job, node, indices, attempt, begin, end):  # type: ignore[no-untyped-def]
        allocations.append(
            {
                "job_id": job["id"],
                "attempt": attempt,
                "replica": 0,
                "tenant": job["tenant"],
                "node": node["name"],
                "gpu_type": node["gpu_type"],
                "gpu_indices": indices,
                "gpu_milli": job["gpu_milli"],
                "cpu_milli": 8000,
                "mem_mib": 65536,
                "pid": None,
                "allocated_at": begin,
                "released_at": end,
            }
        )
        share = len(indices.split(",")) * job["gpu_milli"] / GPU_MILLI
        for day, seconds in split_by_day(begin, end):
            usage[(job["tenant"], node["gpu_type"], day)] += share * seconds

    # Running jobs: each tenant holds most of its guarantee, borrowers take part of
    # what is left, and about 10 % stays free; nodes filled in rack order.
    running = 0
    lane_end: dict[tuple[str, int], float] = {}
    """(node, GPU) → when the finished history must end on it (a running job's start)."""
    for gpu_type, pool in by_type.items():
        up = [n for n in pool if n["state"] != "down"]
        free_gpus = [(n, g) for n in up for g in range(n["gpus"])]
        wants = []
        for q in quotas:
            if q["gpu_type"] == gpu_type:
                held = round(q["guaranteed_milli"] / GPU_MILLI * rng.uniform(0.55, 1.0))
                wants.append((q["tenant"], held))
        users = [t for t, _ in wants] or names
        spare = int(len(free_gpus) * 0.9) - sum(h for _, h in wants)
        while spare > 0:
            borrow = min(spare, rng.choice((1, 2, 4, 8, 8, 16)))
            wants.append((rng.choice(users), borrow))
            spare -= borrow
        rng.shuffle(wants)
        cursor = 0
        for tenant, amount in wants:
            while amount > 0 and cursor < len(free_gpus):
                node = free_gpus[cursor][0]
                room = [g for n, g in free_gpus[cursor : cursor + node["gpus"]] if n is node]
                take = min(amount, len(room), rng.choice((1, 2, 4, 8)))
                fractional = take == 1 and rng.random() < 0.1
                begin = now - rng.random() * 3 * DAY
                job = job_row(
                    tenant,
                    gpu_type,
                    (1, take, 500 if fractional else GPU_MILLI),
                    begin - rng.expovariate(1 / 900),
                    "running",
                    started_at=begin,
                    attempts=1,
                )
                indices = room[:take]
                for g in indices:
                    lane_end[(node["name"], g)] = begin
                cursor += take
                amount -= take
                event(job["submitted_at"], job, None, "pending", "submitted")
                event(begin, job, "pending", "starting", "scheduled")
                event(begin + 1, job, "starting", "running", "launched")
                allocations.append(
                    {
                        "job_id": job["id"],
                        "attempt": 1,
                        "replica": 0,
                        "tenant": tenant,
                        "node": node["name"],
                        "gpu_type": gpu_type,
                        "gpu_indices": ",".join(map(str, indices)),
                        "gpu_milli": job["gpu_milli"],
                        "cpu_milli": 8000,
                        "mem_mib": 65536,
                        "pid": 4242,
                        "allocated_at": begin,
                        "released_at": None,
                    }
                )
                running += 1

    # Finished jobs over the last ``days`` days, packed so that no GPU is ever held
    # twice: each node is split into groups of GPUs (8, 4+4, 4+2+2, ...), and each group
    # runs jobs of its size one after another until its GPUs' running jobs began.
    span = size.days * DAY
    splits = ((8,), (4, 4), (4, 2, 2), (2, 2, 2, 2), (4, 2, 1, 1), (1,) * 8)
    groups = []
    for n in nodes:
        first = 0
        for width in rng.choice(splits):
            chosen = list(range(first, first + width))
            first += width
            limit = min(lane_end.get((n["name"], g), now - 120) for g in chosen)
            groups.append((n, chosen, limit))
    group_s = sum(limit - (now - span) for _, _, limit in groups)
    gap_s = 300.0
    # A mean run time that gives a few more jobs than asked for; the surplus is dropped.
    mean_s = max(600.0, group_s / (1.08 * size.finished) - gap_s)
    runs = []
    for node, chosen, limit in groups:
        t = now - span + rng.random() * mean_s
        milli = 500 if len(chosen) == 1 and rng.random() < 0.08 else GPU_MILLI
        while True:
            start = t + rng.expovariate(1 / gap_s)
            if start >= limit - 60:
                break
            end = min(start + math.exp(rng.gauss(math.log(mean_s) - 0.5, 1.0)), limit - 30)
            runs.append((node["name"], chosen, milli, start, end))
            t = end
    runs.sort(key=lambda r: r[3])
    node_of = {n["name"]: n for n in nodes}
    tenants_of: dict[str, list[str]] = defaultdict(list)
    weight_of = dict(zip(names, tenant_weights, strict=True))
    for t in names:
        tenants_of[primary[t]].append(t)
    # Fill every GPU's time up to now, then keep the number of jobs asked for (the
    # dropped ones leave gaps spread over the month, not a hole at its end).
    if len(runs) > size.finished:
        keep = sorted(rng.sample(range(len(runs)), size.finished))
        runs = [runs[i] for i in keep]
    made = len(runs)
    for name, chosen, milli, start, end in runs:
        node = node_of[name]
        users = tenants_of[node["gpu_type"]] or names
        tenant = rng.choices(users, weights=[weight_of[t] for t in users])[0]
        submitted = start - rng.expovariate(1 / 1200)
        final = _weighted(rng, (("succeeded", 0.8), ("failed", 0.12), ("cancelled", 0.08)))
        job = job_row(tenant, node["gpu_type"], (1, len(chosen), milli), submitted, final)
        event(submitted, job, None, "pending", "submitted")
        indices = ",".join(str(g) for g in chosen)
        attempt = 1
        if rng.random() < 0.05 and end - start > 600:
            cut = start + (end - start) / 2
            event(start, job, "pending", "starting", "scheduled")
            event(start + 1, job, "starting", "running", "launched")
            add_attempt(job, node, indices, attempt, start, cut)
            event(cut, job, "running", "preempted", "preempt", "reclaimed by a guarantee")
            event(cut, job, "preempted", "pending", "requeued", "requeued")
            start = cut + min(rng.expovariate(1 / 300), (end - cut) / 2)
            attempt = 2
        event(start, job, "pending", "starting", "scheduled")
        event(start + 1, job, "starting", "running", "launched")
        add_attempt(job, node, indices, attempt, start, end)
        exit_code = {"succeeded": 0, "failed": 1, "cancelled": None}[final]
        event(end, job, "running", final, "exit" if final != "cancelled" else "cancel")
        job.update(
            started_at=start,
            finished_at=end,
            attempts=attempt,
            exit_code=exit_code,
            message={"succeeded": "", "failed": "exit code 1", "cancelled": "cancelled"}[final],
        )

    # The pending queue, submitted over the last day.
    for _ in range(size.pending):
        tenant = rng.choices(names, weights=tenant_weights)[0]
        submitted = now - rng.random() * DAY
        reason = _weighted(rng, [(r[0], r[1]) for r in PENDING_REASONS])
        message = next(r[2] for r in PENDING_REASONS if r[0] == reason)
        eta = now + rng.expovariate(1 / 7200) if rng.random() < 0.85 else None
        job = job_row(
            tenant,
            primary[tenant],
            shape(rng),
            submitted,
            "pending",
            pending_reason=reason,
            pending_message=message,
            estimated_start=eta,
        )
        event(submitted, job, None, "pending", "submitted")

    events.sort(key=lambda e: e["at"])
    usage_rows = [
        {"tenant": t, "gpu_type": g, "day": d, "gpu_seconds": s}
        for (t, g, d), s in sorted(usage.items())
    ]
    with engine.begin() as conn:
        conn.execute(insert(TenantRow), tenants)
        conn.execute(insert(QuotaRow), quotas)
        conn.execute(insert(NodeRow), nodes)
        for chunk in _chunks(jobs):
            conn.execute(insert(JobRow), chunk)
        for chunk in _chunks(allocations):
            conn.execute(insert(AllocationRow), chunk)
        for chunk in _chunks(events):
            conn.execute(insert(EventRow), chunk)
        conn.execute(insert(UsageRow), usage_rows)
        if not url.startswith("sqlite"):
            conn.exec_driver_sql("SELECT setval('jobs_id_seq', (SELECT max(id) FROM jobs))")
    engine.dispose()
    return {
        "tenants": len(tenants),
        "nodes": len(nodes),
        "jobs": len(jobs),
        "running": running,
        "pending": size.pending,
        "finished": made,
        "allocations": len(allocations),
        "events": len(events),
        "tenant_names": names,
    }


def _chunks(rows: list[dict], size: int = 5000) -> list[list[dict]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]
