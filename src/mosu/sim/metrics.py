"""The one definition of every simulation metric.

Every report, table, plot and benchmark computes its numbers here, from a
``SimLog`` (see ``mosu.sim.records``):

- **JCT** = finish − submit, over finished jobs only.
- **Queueing delay** = first start − submit, over jobs that started.
- **Bounded slowdown** = JCT / max(duration, 10 s), over finished jobs.
- **GPU utilization** = allocated GPU-seconds / (cluster GPUs × time span), the
  span being [``start_s``, ``end_s``] of the log.
- **Quota attainment** of a tenant = ∫ Σ min(allocation, guarantee, demand) dt /
  ∫ Σ min(guarantee, demand) dt, summed over its GPU types, integrated over time
  where min(guarantee, demand) > 0. None for a tenant that never wanted any of
  its guarantee. A guarantee keyed by GPU type ``*`` covers the tenant's usage
  of every type without a guarantee of its own, summed.
- **Reclaim latency**: ``reclaim_wait_s`` of each job that started within its
  tenant's guarantee but waited for capacity held by borrowers; reported as the
  p99 over those jobs (None when no job had to wait).
- **Fairness** = Jain's index of allocation / weight across backlogged tenants
  (demand > allocation), time-weighted over intervals where at least two tenants
  are backlogged. When every backlogged tenant holds nothing, they are treated
  alike and the index is 1. None when never two tenants were backlogged at once.
- **Useful utilization** = (allocated − lost) GPU-seconds / (cluster GPUs × span):
  utilization less the work preemptions threw away.
- **Preemption cost** = GPU-seconds of lost work, summed over jobs; its
  **share** divides it by the allocated GPU-seconds (the work lost is part of
  what ran).
- **Idle while waiting** = ∫ min(idle GPUs, GPUs asked by waiting jobs) dt over
  the whole cluster, in GPU-seconds: capacity left idle while work that could
  have used it (by count) waited. It bounds from above the GPU time held idle
  for reservations (a reservation holds idle GPUs for a waiting job, at most
  what that job asks), and also counts idle GPUs too few or too scattered for
  any waiting gang.
- **Idle while reserved** = ∫ GPUs idle on nodes held by backfill reservations dt,
  in GPU-seconds, each reservation counting at most what its job asks: the
  ``reserved_idle`` series the replay records from each cycle's
  ``CycleResult.reservations``. Part of idle while waiting.
- **Quota attainment within guarantee**: quota attainment with a demand of the
  allocation plus what the waiting jobs could start beside it within the tenant's
  guarantee (``usage_within``: allocation, and that demand), their sizes taken
  largest first while they fit in the guarantee less the allocation (the most that
  fits when each size divides the larger ones, as powers of two do). A gang larger
  than the guarantee can run only on borrowed capacity, and one larger than what
  the tenant's own running jobs leave of it could start only by preempting them:
  neither wait breaks the guarantee, which the tenant is using. (Counting every
  waiting gang that fits the guarantee alone called a tenant holding 256 of 512
  GPUs and waiting for a 512-GPU gang half-served.)
- **Large-gang queueing** = the p99 queueing delay of jobs of at least a given
  GPU count (``LARGE_GANG_GPUS`` in ``summarize``).
- **Borrowed GPU-seconds** of a tenant = ∫ Σ max(0, allocation − guarantee) dt over
  its guarantees (``*`` as for attainment): what it held beyond what it was owed.
- **Wait** is the queueing delay; the **replay error** of a job = |replayed wait −
  real wait|, over jobs that started both in the replay and for real (``wait_error``).
- **Makespan** = (last finish, or ``end_s`` if a job never finished) − first submit.
- **Start-time estimates** (``eta``), over jobs that started after waiting at least
  ``ETA_MIN_WAIT_S`` and whose estimate at submission was recorded: the estimated
  wait is likely start − submit; ``median_abs_error_s``/``p90_abs_error_s`` of
  |real wait − estimated wait| over jobs with an estimate; ``within_factor_2`` the
  fraction of all these jobs whose real wait is within [estimated / 2, estimated × 2];
  ``late_bound_held`` the fraction that started no later than the late bound (the
  likely start where no late bound was given); ``unknown`` the fraction given no
  estimate, which counts as a miss in both fractions.

Percentiles use numpy's default linear interpolation. A statistic over no
values is None, so that JSON output never carries NaN.
The usage series is piecewise constant: a sample holds for its (tenant,
gpu_type) until the next sample of the same pair, or the end of the log; before
its first sample a pair holds and wants nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mosu.core.models import ANY_GPU_TYPE, GPU_MILLI
from mosu.sim.records import JobOutcome, SimLog, UsageSample

SLOWDOWN_FLOOR_S = 10.0
"""Bounded slowdown divides by at least this, so tiny jobs do not dominate."""
LARGE_GANG_GPUS = 16
"""Jobs of at least this many GPUs count as large gangs."""
ETA_MIN_WAIT_S = 60.0
"""Start-time estimates are judged only on jobs that waited at least this long: a job
that starts within a minute needs no forecast."""


# --- per-job metrics -------------------------------------------------------


def jct_s(outcome: JobOutcome) -> float | None:
    """Job completion time, or None for a job that did not finish."""
    if outcome.finish_s is None:
        return None
    return outcome.finish_s - outcome.submit_s


def queueing_delay_s(outcome: JobOutcome) -> float | None:
    """Time from submit to first start, or None for a job that never started."""
    if outcome.first_start_s is None:
        return None
    return outcome.first_start_s - outcome.submit_s


def bounded_slowdown(outcome: JobOutcome, *, floor_s: float = SLOWDOWN_FLOOR_S) -> float | None:
    """JCT / max(duration, floor), or None for a job that did not finish."""
    jct = jct_s(outcome)
    if jct is None:
        return None
    return jct / max(outcome.duration_s, floor_s)


# --- plain statistics ------------------------------------------------------


def mean(values: Iterable[float]) -> float | None:
    data = list(values)
    return float(np.mean(data)) if data else None


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation; None for no values."""
    data = list(values)
    return float(np.percentile(data, q)) if data else None


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (Σx)² / (n Σx²), in [1/n, 1].

    All-zero values are treated as perfectly equal (1.0). Raises on no values.
    """
    if not values:
        raise ValueError("Jain's index needs at least one value")
    total = float(np.sum(values))
    squares = float(np.sum(np.square(values)))
    if squares == 0.0:
        return 1.0
    n = len(values)
    return _clamp(total * total / (n * squares), 1.0 / n, 1.0)


def _clamp(x: float, lo: float, hi: float) -> float:
    # Only floating-point rounding can push these ratios out of range.
    return min(hi, max(lo, x))


def reclaim_latency_p99_s(outcomes: Iterable[JobOutcome]) -> float | None:
    return percentile((o.reclaim_wait_s for o in outcomes if o.reclaim_wait_s is not None), 99)


def preemption_cost_gpu_s(outcomes: Iterable[JobOutcome]) -> float:
    """GPU-seconds of work lost to preemptions."""
    return float(sum(o.lost_gpu_s for o in outcomes))


def large_gang_p99_queue_s(outcomes: Iterable[JobOutcome], min_gpus: int) -> float | None:
    """p99 queueing delay of the jobs of at least ``min_gpus`` GPUs that started."""
    least = min_gpus * GPU_MILLI
    return percentile(
        (q for o in outcomes if o.gpu_milli >= least and (q := queueing_delay_s(o)) is not None),
        99,
    )


def allocated_gpu_s(log: SimLog) -> float:
    """GPU-seconds allocated over the log's span (what ran, lost work included)."""
    return _integrate(log).allocated_milli_s / GPU_MILLI


def preemption_loss_share(log: SimLog) -> float | None:
    """Lost GPU-seconds over allocated GPU-seconds; None when nothing ran."""
    used = allocated_gpu_s(log)
    return preemption_cost_gpu_s(log.outcomes) / used if used > 0 else None


def idle_while_waiting_gpu_s(log: SimLog) -> float:
    """∫ min(idle GPUs, GPUs asked by waiting jobs) dt, in GPU-seconds (module docstring)."""
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    allocated = waiting = 0
    now, total = log.start_s, 0.0
    for sample in _ordered(log.usage):
        if sample.time_s > log.end_s:
            break
        t = max(sample.time_s, log.start_s)
        if t > now:
            idle = max(0, log.capacity_milli - allocated)
            total += min(idle, max(0, waiting)) * (t - now)
            now = t
        old_alloc, old_demand = pairs.get((sample.tenant, sample.gpu_type), (0, 0))
        pairs[(sample.tenant, sample.gpu_type)] = (sample.allocated_milli, sample.demand_milli)
        allocated += sample.allocated_milli - old_alloc
        waiting += (sample.demand_milli - sample.allocated_milli) - (old_demand - old_alloc)
    if log.end_s > now:
        total += min(max(0, log.capacity_milli - allocated), max(0, waiting)) * (log.end_s - now)
    return total / GPU_MILLI


def idle_while_reserved_gpu_s(log: SimLog) -> float:
    """∫ GPUs idle on reserved nodes dt, in GPU-seconds (module docstring)."""
    total, now, value = 0.0, log.start_s, 0
    for time_s, milli in log.reserved_idle:
        t = min(max(time_s, log.start_s), log.end_s)
        total += value * (t - now)
        now, value = t, milli
    total += value * max(0.0, log.end_s - now)
    return total / GPU_MILLI


def attainment_within_guarantee(log: SimLog) -> dict[str, float | None]:
    """Quota attainment of the jobs that fit within their tenant's guarantee."""
    return quota_attainment(replace(log, usage=log.usage_within))


def makespan_s(log: SimLog) -> float | None:
    if not log.outcomes:
        return None
    first = min(o.submit_s for o in log.outcomes)
    finishes = [o.finish_s for o in log.outcomes if o.finish_s is not None]
    last = log.end_s if len(finishes) < len(log.outcomes) else max(finishes)
    return last - first


# --- usage-series metrics --------------------------------------------------


@dataclass
class _Bucket:
    """One tenant's usage against one guarantee; integrals are lazy up to ``since``."""

    guarantee: int
    allocated: int = 0
    demand: int = 0
    since: float = 0.0
    attained: float = 0.0
    wanted: float = 0.0
    borrowed: float = 0.0

    def advance(self, t: float) -> None:
        dt = t - self.since
        if dt > 0:
            wanted = min(self.guarantee, self.demand)
            self.wanted += wanted * dt
            self.attained += min(self.allocated, wanted) * dt
            if self.allocated > self.guarantee:
                self.borrowed += (self.allocated - self.guarantee) * dt
        self.since = t


@dataclass
class _UsageIntegrals:
    span_s: float
    allocated_milli_s: float
    fair_time_s: float
    fair_jain_s: float
    attained: dict[str, float] = field(default_factory=dict)
    wanted: dict[str, float] = field(default_factory=dict)
    borrowed_milli_s: dict[str, float] = field(default_factory=dict)


def _ordered(usage: Iterable[UsageSample]) -> list[UsageSample]:
    # Stable: samples at one instant apply in log order, the last one wins.
    return sorted(usage, key=lambda s: s.time_s)


def _bucket_key(
    tenant: str, gpu_type: str, guarantees: Mapping[tuple[str, str], int]
) -> tuple[str, str]:
    if (tenant, gpu_type) in guarantees:
        return tenant, gpu_type
    if (tenant, ANY_GPU_TYPE) in guarantees:
        return tenant, ANY_GPU_TYPE
    return tenant, gpu_type


def _integrate(log: SimLog) -> _UsageIntegrals:
    start, end = log.start_s, log.end_s
    weights = log.weights
    pairs: dict[tuple[str, str], tuple[int, int]] = {}
    buckets: dict[tuple[str, str], _Bucket] = {}
    tenants: dict[str, list[int]] = {}  # tenant -> [allocated, demand]
    backlogged: dict[str, float] = {}  # tenant -> allocation / weight
    s1 = s2 = 0.0
    total = 0
    now = start
    allocated_milli_s = fair_time = fair_jain = 0.0

    def advance(t: float) -> None:
        nonlocal now, allocated_milli_s, fair_time, fair_jain
        dt = t - now
        if dt <= 0:
            return
        allocated_milli_s += total * dt
        n = len(backlogged)
        if n >= 2:
            jain = 1.0 if s2 <= 0 else _clamp(s1 * s1 / (n * s2), 1.0 / n, 1.0)
            fair_time += dt
            fair_jain += jain * dt
        now = t

    for sample in _ordered(log.usage):
        if sample.time_s > end:
            break
        t = max(sample.time_s, start)
        advance(t)
        key = (sample.tenant, sample.gpu_type)
        old_alloc, old_demand = pairs.get(key, (0, 0))
        new_alloc, new_demand = sample.allocated_milli, sample.demand_milli
        pairs[key] = (new_alloc, new_demand)
        d_alloc, d_demand = new_alloc - old_alloc, new_demand - old_demand
        total += d_alloc

        bkey = _bucket_key(sample.tenant, sample.gpu_type, log.guarantees)
        bucket = buckets.get(bkey)
        if bucket is None:
            bucket = buckets[bkey] = _Bucket(log.guarantees.get(bkey, 0), since=t)
        bucket.advance(t)
        bucket.allocated += d_alloc
        bucket.demand += d_demand

        state = tenants.setdefault(sample.tenant, [0, 0])
        if sample.tenant in backlogged:
            x = backlogged.pop(sample.tenant)
            s1 -= x
            s2 -= x * x
        state[0] += d_alloc
        state[1] += d_demand
        if state[1] > state[0]:
            x = state[0] / weights.get(sample.tenant, 1.0)
            backlogged[sample.tenant] = x
            s1 += x
            s2 += x * x
        if len(backlogged) < 2:
            # Re-anchor the running sums so rounding never carries over.
            s1 = sum(backlogged.values())
            s2 = sum(x * x for x in backlogged.values())
    advance(end)

    integrals = _UsageIntegrals(max(0.0, end - start), allocated_milli_s, fair_time, fair_jain)
    for (tenant, _), bucket in buckets.items():
        bucket.advance(end)
        integrals.attained[tenant] = integrals.attained.get(tenant, 0.0) + bucket.attained
        integrals.wanted[tenant] = integrals.wanted.get(tenant, 0.0) + bucket.wanted
        integrals.borrowed_milli_s[tenant] = (
            integrals.borrowed_milli_s.get(tenant, 0.0) + bucket.borrowed
        )
    return integrals


def utilization(log: SimLog) -> float | None:
    """Allocated GPU-seconds over capacity × span; None for an empty span."""
    if log.capacity_milli <= 0 or log.end_s <= log.start_s:
        return None
    integrals = _integrate(log)
    return _clamp(integrals.allocated_milli_s / (log.capacity_milli * integrals.span_s), 0.0, 1.0)


def useful_utilization(log: SimLog) -> float | None:
    """Utilization counting only work kept: allocated GPU-seconds less those lost to
    preemption, over capacity × span. A policy that preempts much keeps its GPUs busy
    redoing work; this tells that apart from progress. None for an empty span."""
    if log.capacity_milli <= 0 or log.end_s <= log.start_s:
        return None
    integrals = _integrate(log)
    kept = integrals.allocated_milli_s - preemption_cost_gpu_s(log.outcomes) * GPU_MILLI
    return _clamp(kept / (log.capacity_milli * integrals.span_s), 0.0, 1.0)


def quota_attainment(log: SimLog) -> dict[str, float | None]:
    """Per tenant seen in the usage series; None if it never wanted its guarantee."""
    return _attainment(_integrate(log))


def _attainment(integrals: _UsageIntegrals) -> dict[str, float | None]:
    return {
        tenant: (_clamp(integrals.attained[tenant] / wanted, 0.0, 1.0) if wanted > 0 else None)
        for tenant, wanted in sorted(integrals.wanted.items())
    }


def borrowed_gpu_s(log: SimLog) -> dict[str, float]:
    """GPU-seconds each tenant held beyond its guarantees (see module docstring)."""
    return {t: v / GPU_MILLI for t, v in sorted(_integrate(log).borrowed_milli_s.items())}


def fairness(log: SimLog) -> float | None:
    """Time-weighted Jain's index over backlogged tenants (see module docstring)."""
    return _fairness(_integrate(log))


def _fairness(integrals: _UsageIntegrals) -> float | None:
    if integrals.fair_time_s <= 0:
        return None
    return integrals.fair_jain_s / integrals.fair_time_s


# --- step series for plots -------------------------------------------------


def _step_arrays(times: list[float], values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(times, dtype=float), np.array(values, dtype=float)


def allocation_series(log: SimLog) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each tenant's allocation (GPU milli, all GPU types) as a step series.

    Per tenant: change times (ascending, clipped to the log's span) and the
    allocation from each time until the next; before the first time it is 0.
    """
    pairs: dict[tuple[str, str], int] = {}
    held: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    values: dict[str, list[int]] = {}
    for sample in _ordered(log.usage):
        if sample.time_s > log.end_s:
            break
        t = max(sample.time_s, log.start_s)
        key = (sample.tenant, sample.gpu_type)
        now = held.get(sample.tenant, 0) + sample.allocated_milli - pairs.get(key, 0)
        pairs[key] = sample.allocated_milli
        held[sample.tenant] = now
        ts, vs = times.setdefault(sample.tenant, []), values.setdefault(sample.tenant, [])
        if ts and ts[-1] == t:
            vs[-1] = now
        else:
            ts.append(t)
            vs.append(now)
    return {tenant: _step_arrays(times[tenant], values[tenant]) for tenant in sorted(times)}


def total_allocation_series(log: SimLog) -> tuple[np.ndarray, np.ndarray]:
    """The cluster's total allocation (GPU milli) as a step series starting at ``start_s``."""
    pairs: dict[tuple[str, str], int] = {}
    total = 0
    times: list[float] = [log.start_s]
    values: list[int] = [0]
    for sample in _ordered(log.usage):
        if sample.time_s > log.end_s:
            break
        t = max(sample.time_s, log.start_s)
        key = (sample.tenant, sample.gpu_type)
        total += sample.allocated_milli - pairs.get(key, 0)
        pairs[key] = sample.allocated_milli
        if times[-1] == t:
            values[-1] = total
        else:
            times.append(t)
            values.append(total)
    return _step_arrays(times, values)


def eta_accuracy(outcomes: Iterable[JobOutcome]) -> dict[str, Any]:
    """How the start-time estimates made at submission held (see the module docstring)."""
    judged = [
        o
        for o in outcomes
        if o.eta_recorded
        and o.first_start_s is not None
        and o.first_start_s - o.submit_s >= ETA_MIN_WAIT_S
    ]
    errors: list[float] = []
    within = held = unknown = 0
    for o in judged:
        waited = (o.first_start_s or 0.0) - o.submit_s
        if o.eta_start_s is None:
            unknown += 1
            continue
        estimated = max(0.0, o.eta_start_s - o.submit_s)
        errors.append(abs(waited - estimated))
        within += estimated / 2 <= waited <= estimated * 2
        late = o.eta_late_s if o.eta_late_s is not None else o.eta_start_s
        held += (o.first_start_s or 0.0) <= late
    n = len(judged)
    return {
        "jobs": n,
        "median_abs_error_s": percentile(errors, 50),
        "p90_abs_error_s": percentile(errors, 90),
        "within_factor_2": within / n if n else None,
        "late_bound_held": held / n if n else None,
        "unknown": unknown / n if n else None,
    }


# --- the summary -----------------------------------------------------------


def summarize(log: SimLog) -> dict[str, Any]:
    """Every headline metric of one run, JSON-ready (None where undefined)."""
    outcomes = log.outcomes
    finished = [o for o in outcomes if o.finish_s is not None]
    jcts = [o.finish_s - o.submit_s for o in finished if o.finish_s is not None]
    queues = [q for o in outcomes if (q := queueing_delay_s(o)) is not None]
    slowdowns = [s for o in finished if (s := bounded_slowdown(o)) is not None]
    large = [
        q
        for o in outcomes
        if o.gpu_milli >= LARGE_GANG_GPUS * GPU_MILLI and (q := queueing_delay_s(o)) is not None
    ]
    integrals = _integrate(log)
    attainment = _attainment(integrals)
    with_demand = [a for a in attainment.values() if a is not None]
    util = None
    if log.capacity_milli > 0 and integrals.span_s > 0:
        util = _clamp(integrals.allocated_milli_s / (log.capacity_milli * integrals.span_s), 0, 1)

    per_tenant: dict[str, dict[str, Any]] = {}
    by_tenant: dict[str, list[JobOutcome]] = {}
    for o in outcomes:
        by_tenant.setdefault(o.tenant, []).append(o)
    for tenant in sorted(set(by_tenant) | set(attainment)):
        jobs = by_tenant.get(tenant, [])
        per_tenant[tenant] = {
            "avg_jct_s": mean(j for o in jobs if (j := jct_s(o)) is not None),
            "avg_queue_s": mean(q for o in jobs if (q := queueing_delay_s(o)) is not None),
            "quota_attainment": attainment.get(tenant),
            "jobs": len(jobs),
        }

    return {
        "jobs": len(outcomes),
        "unfinished": len(outcomes) - len(finished),
        "unstarted": sum(o.first_start_s is None for o in outcomes),
        "avg_jct_s": mean(jcts),
        "p50_jct_s": percentile(jcts, 50),
        "p99_jct_s": percentile(jcts, 99),
        "avg_queue_s": mean(queues),
        "p99_queue_s": percentile(queues, 99),
        "large_gang_p99_queue_s": percentile(large, 99),
        "avg_bounded_slowdown": mean(slowdowns),
        "utilization": util,
        "makespan_s": makespan_s(log),
        "quota_attainment": min(with_demand) if with_demand else None,
        "reclaim_p99_s": reclaim_latency_p99_s(outcomes),
        "jain_fairness": _fairness(integrals),
        "preemptions": sum(o.preemptions for o in outcomes),
        "lost_gpu_s": preemption_cost_gpu_s(outcomes),
        "eta": eta_accuracy(outcomes),
        "tenants": per_tenant,
    }


# --- what-if comparisons ---------------------------------------------------


def _group_report(outcomes: Sequence[JobOutcome]) -> dict[str, Any]:
    waits = [q for o in outcomes if (q := queueing_delay_s(o)) is not None]
    return {
        "jobs": len(outcomes),
        "avg_wait_s": mean(waits),
        "p95_wait_s": percentile(waits, 95),
        "avg_jct_s": mean(j for o in outcomes if (j := jct_s(o)) is not None),
        "preemptions": sum(o.preemptions for o in outcomes),
        "lost_gpu_h": preemption_cost_gpu_s(outcomes) / 3600,
    }


def tenant_report(log: SimLog) -> dict[str, Any]:
    """Per tenant and overall: jobs, average and p95 wait, average JCT, preemptions and
    GPU-hours lost to them, quota attainment and GPU-hours borrowed; overall also the
    utilization, the lowest attainment and the summed borrowing."""
    integrals = _integrate(log)
    attainment = _attainment(integrals)
    borrowed = {t: v / GPU_MILLI / 3600 for t, v in integrals.borrowed_milli_s.items()}
    by_tenant: dict[str, list[JobOutcome]] = {}
    for o in log.outcomes:
        by_tenant.setdefault(o.tenant, []).append(o)
    tenants: dict[str, dict[str, Any]] = {}
    for tenant in sorted(set(by_tenant) | set(attainment)):
        row = _group_report(by_tenant.get(tenant, []))
        row["quota_attainment"] = attainment.get(tenant)
        row["borrowed_gpu_h"] = borrowed.get(tenant, 0.0)
        tenants[tenant] = row
    overall = _group_report(log.outcomes)
    with_demand = [a for a in attainment.values() if a is not None]
    overall["quota_attainment"] = min(with_demand) if with_demand else None
    overall["borrowed_gpu_h"] = sum(borrowed.values())
    util = None
    if log.capacity_milli > 0 and integrals.span_s > 0:
        util = _clamp(integrals.allocated_milli_s / (log.capacity_milli * integrals.span_s), 0, 1)
    overall["utilization"] = util
    return {"overall": overall, "tenants": tenants}


def wait_error(log: SimLog, real_wait_s: Mapping[str, float]) -> dict[str, Any]:
    """How far a replay's waits are from real ones: the median and p90 of |replayed wait −
    real wait| over the jobs of ``real_wait_s`` that also started in the replay, with the
    median real and replayed waits of those jobs for scale."""
    errors: list[float] = []
    real: list[float] = []
    replayed: list[float] = []
    for o in log.outcomes:
        truth = real_wait_s.get(o.job_id)
        wait = queueing_delay_s(o)
        if truth is None or wait is None:
            continue
        errors.append(abs(wait - truth))
        real.append(truth)
        replayed.append(wait)
    return {
        "jobs": len(errors),
        "median_error_s": percentile(errors, 50),
        "p90_error_s": percentile(errors, 90),
        "median_real_wait_s": percentile(real, 50),
        "median_replayed_wait_s": percentile(replayed, 50),
    }
