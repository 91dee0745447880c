"""Running jobs as preemption candidates (``Victim``s), built once per cycle and
shared by reclaim and rank preemption."""

from __future__ import annotations

from mosu.core.models import GPU_MILLI
from mosu.engine.cycle.ranks import running_class_map
from mosu.engine.cycle.work import Work, node_type
from mosu.engine.preemption import Victim, lost_gpu_s, on_nodes, price_gpu_s
from mosu.engine.profiles import VictimOrder


def running_victims(work: Work) -> list[Victim]:
    """The ``Victim`` of every still-running job old enough to preempt, cheapest first.
    A victim's cost does not change within a cycle and running jobs only leave, so the
    list is built once and filtered."""
    if work.memo.all_victims is None:
        victims = [v for job_id in work.running if (v := as_victim(work, job_id)) is not None]
        # Costs end with the job id, so they are unique and the order is total.
        victims.sort(key=lambda v: v.cost)
        work.memo.all_victims = victims
    return [v for v in work.memo.all_victims if v.job_id in work.running]


def as_victim(work: Work, job_id: str) -> Victim | None:
    """Running job ``job_id`` as a preemption candidate (None if it has run less than
    the profile's minimum), built once per cycle."""
    memo = work.memo.victim_of
    if job_id in memo:
        return memo[job_id]
    run = work.running[job_id]
    now = work.now
    victim: Victim | None = None
    if now - run.started_s >= work.profile.min_runtime_s:
        order = work.profile.victim_order
        gpu = run.job.total_gpu_milli
        if order == VictimOrder.CHEAPEST:
            cost: tuple[float | str, ...] = (run.job.priority, lost_gpu_s(run, now), gpu, job_id)
        elif order == VictimOrder.SERVED:
            klass = running_class_map(work)[job_id][1:]
            served = tuple(-x for x in klass if isinstance(x, (int, float)))
            total = run.attained_gpu_s + max(0.0, now - run.started_s) * gpu / GPU_MILLI
            cost = (run.job.priority, *served, lost_gpu_s(run, now), -total, gpu, job_id)
        elif order == VictimOrder.PRICED:
            klass = running_class_map(work)[job_id][1:]
            served = tuple(-x for x in klass if isinstance(x, (int, float)))
            total = run.attained_gpu_s + max(0.0, now - run.started_s) * gpu / GPU_MILLI
            price = price_gpu_s(run, now, work.profile.restart_overhead_s)
            cost = (run.job.priority, price, *served, -total, gpu, job_id)
        else:
            cost = (run.job.priority, -run.started_s, job_id)
        gpu_type = node_type(work, run.placement[0].node) if run.placement else ""
        held = on_nodes(work.state, run.placement)
        victim = Victim(job_id, run.job.tenant, run.placement, gpu, cost, gpu_type, held)
    memo[job_id] = victim
    return victim
