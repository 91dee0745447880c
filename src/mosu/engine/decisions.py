"""Decisions are data: the engine returns them, callers apply them."""

from __future__ import annotations

from dataclasses import dataclass

from mosu.core.models import Placement
from mosu.core.reasons import PendingReason, PreemptReason


@dataclass(frozen=True, slots=True)
class Start:
    job_id: str
    placement: Placement


@dataclass(frozen=True, slots=True)
class Preempt:
    job_id: str
    reason: PreemptReason
    for_job: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """Why a job waits and when it may start: ``estimated_start_s`` is the likely
    start, ``late_start_s`` a bound it starts before nine times in ten (both None:
    unknown). ``planned_start_s`` and ``basis`` are the plan they were made from,
    what a caller feeds back to ``WaitSpread`` once the job starts."""

    job_id: str
    reason: PendingReason
    message: str
    estimated_start_s: float | None = None
    late_start_s: float | None = None
    planned_start_s: float | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """Capacity a reservation holds for blocked job ``job_id``, which is planned to
    start at ``start_s`` on ``nodes``: ``idle_gpu_milli`` is what is free on those
    nodes as the cycle ends (at most the job's need), idle unless work that ends
    before ``start_s`` is backfilled into it."""

    job_id: str
    start_s: float
    nodes: tuple[str, ...]
    idle_gpu_milli: int


@dataclass(frozen=True, slots=True)
class CycleResult:
    """Preemptions first (they free capacity the starts use), then starts, then the rest.

    ``reservations`` are the capacity held for blocked jobs as the cycle ends.
    ``wake_at_s``, when set, is a time at which a decision put off this cycle (a
    preemption waiting for its victims' next checkpoint) becomes cheaper: the caller
    runs a cycle then, even if nothing else happens."""

    preemptions: tuple[Preempt, ...] = ()
    starts: tuple[Start, ...] = ()
    pending: tuple[Pending, ...] = ()
    reservations: tuple[Held, ...] = ()
    wake_at_s: float | None = None
