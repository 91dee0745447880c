"""Running jobs as preemption candidates (``Victim``s), built once per cycle and
shared by reclaim and rank preemption."""

from __future__ import annotations

from collections.abc import Iterable

from mosu.core.models import GPU_MILLI, RunningJob
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


def running_of(work: Work, tenant: str) -> list[str]:
    """Ids of ``tenant``'s jobs running when first asked (filter by ``Work.running``)."""
    by_tenant = work.memo.running_of_tenant
    if by_tenant is None:
        by_tenant = work.memo.running_of_tenant = {}
        for job_id, run in work.running.items():
            ids = by_tenant.get(run.job.tenant)
            if ids is None:
                by_tenant[run.job.tenant] = [job_id]
            else:
                ids.append(job_id)
    return by_tenant.get(tenant, [])


def tenant_victims(work: Work, tenant: str) -> list[Victim]:
    """``running_victims`` of one tenant: reclaim takes only from tenants that borrow,
    often a few of many, so it builds no ``Victim`` for the others."""
    memo = work.memo
    running = work.running
    victims = memo.victims_of_tenant.get(tenant)
    if victims is None:
        if memo.all_victims is not None:
            victims = [v for v in memo.all_victims if v.tenant == tenant]
        else:
            ids = [job_id for job_id in running_of(work, tenant) if job_id in running]
            victims = [v for job_id in ids if (v := as_victim(work, job_id)) is not None]
            victims.sort(key=lambda v: v.cost)
        memo.victims_of_tenant[tenant] = victims
    return [v for v in victims if v.job_id in running]


def victims_among(work: Work, tenants: Iterable[str]) -> list[Victim]:
    """``running_victims`` of ``tenants`` only, cheapest first."""
    victims = [v for tenant in tenants for v in tenant_victims(work, tenant)]
    victims.sort(key=lambda v: v.cost)
    return victims


def old_enough(work: Work, run: RunningJob) -> bool:
    """Whether ``run`` has run the profile's minimum, so it may be preempted."""
    return work.now - run.started_s >= work.profile.min_runtime_s


def preemptible_tenants(work: Work) -> set[str]:
    """The tenants with a running job ``as_victim`` would make a ``Victim`` of, found
    without building one."""
    return {run.job.tenant for run in work.running.values() if old_enough(work, run)}


def as_victim(work: Work, job_id: str) -> Victim | None:
    """Running job ``job_id`` as a preemption candidate (None if it has run less than
    the profile's minimum), built once per cycle."""
    memo = work.memo.victim_of
    if job_id in memo:
        return memo[job_id]
    run = work.running[job_id]
    now = work.now
    victim: Victim | None = None
    if old_enough(work, run):
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
