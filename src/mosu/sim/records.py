"""What a simulation run leaves behind: per-job outcomes and per-tenant usage.

These records are the only input of ``mosu.sim.metrics`` and ``mosu.sim.plots``,
so a run can be summarised, compared and plotted without re-running it.
Times are seconds on the trace's clock; GPU amounts are in milli (``GPU_MILLI``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How one job fared.

    ``gpu_milli`` is the total over all replicas. ``duration_s`` is the true run
    time from the trace. ``first_start_s``/``finish_s`` are None for a job that
    never started / never finished before the run ended. ``reclaim_wait_s`` is set
    only for a job that started within its tenant's guarantee but had to wait for
    capacity held by borrowers.

    ``eta_recorded`` is True for a job still pending after the cycle of its arrival;
    ``eta_start_s``/``eta_late_s`` are then the likely start and late bound the
    engine gave it there (None: it said "unknown").
    """

    job_id: str
    tenant: str
    gpu_type: str
    gpu_milli: int
    submit_s: float
    first_start_s: float | None
    finish_s: float | None
    duration_s: float
    preemptions: int = 0
    lost_gpu_s: float = 0.0
    reclaim_wait_s: float | None = None
    eta_recorded: bool = False
    eta_start_s: float | None = None
    eta_late_s: float | None = None


@dataclass(frozen=True, slots=True)
class UsageSample:
    """A step of a piecewise-constant series: from ``time_s`` on, until the next
    sample of the same (tenant, gpu_type), the tenant holds ``allocated_milli`` and
    wants ``demand_milli`` (allocation plus pending requests)."""

    time_s: float
    tenant: str
    gpu_type: str
    allocated_milli: int
    demand_milli: int


@dataclass(frozen=True, slots=True)
class SimLog:
    """Everything a run produced.

    ``usage`` is ordered by time. ``capacity_milli`` is the cluster's whole GPU
    capacity. ``guarantees`` maps (tenant, gpu_type) to guaranteed milli and
    ``weights`` maps tenant to its fair-share weight.
    """

    outcomes: tuple[JobOutcome, ...]
    usage: tuple[UsageSample, ...]
    capacity_milli: int
    start_s: float
    end_s: float
    guarantees: Mapping[tuple[str, str], int]
    weights: Mapping[str, float]
    reserved_idle: tuple[tuple[float, int], ...] = ()
    """Steps of a series: from ``time_s`` on, this many milli GPUs sit idle on nodes
    held by backfill reservations (``CycleResult.reservations``)."""
    usage_within: tuple[UsageSample, ...] = ()
    """``usage`` with a demand that counts, of the waiting jobs, only those whose whole
    gang fits within their tenant's guarantee (what
    ``metrics.attainment_within_guarantee`` reads); allocations are all of them."""
