"""Credit arithmetic shared by the platform's ledger and the simulator: rate cards,
the cost of a replica's run, which grant a charge draws from, and what a tenant may
still start. Pure and integer: amounts are micro-credits, times milliseconds.

A replica's charge is defined cumulatively: ``cost_micro(card, use, start, t)`` is the
exact cost from its start to ``t`` as a fraction, and an interval ``[a, b)`` is charged
``floor(cost to b) - floor(cost to a)``. However a run is cut into metering intervals
(every minute, at a crash, at its stop), its charges add up to the floor of the exact
cost of the whole run: slicing never gains or loses a micro-credit.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

MICRO = 1_000_000
"""Micro-credits in a credit."""
HOUR_MS = 3_600_000
CPU_RESOURCE = "cpu"
"""Rate-card name of a CPU core (rate per core-hour)."""
MEM_RESOURCE = "mem"
"""Rate-card name of a GiB of memory (rate per GiB-hour)."""
ANY_GPU = "*"
"""Rate-card name of the GPU rate for a type the card does not name."""
RESERVED_RESOURCES = (CPU_RESOURCE, MEM_RESOURCE)
# Exact cost numerators are in micro-credits x ms x thousandths x MiB-fractions: one
# denominator turns GPU thousandths, CPU thousandths and MiB into whole units per hour.
_DENOMINATOR = HOUR_MS * 1000 * 1024


class CreditPolicy(StrEnum):
    """What happens to a tenant whose credits are exhausted."""

    HOLD = "hold"
    """New jobs wait (``credits-exhausted``); running jobs finish."""
    BEST_EFFORT = "best-effort"
    """The tenant's guarantee is suspended: it runs only on idle capacity, reclaimed first."""
    STOP = "stop"
    """Running jobs are stopped (SIGTERM, grace) and requeued; new jobs wait."""


def to_micro(credits: float) -> int:
    """Credits (as typed by a person) to micro-credits, rounded to the nearest."""
    return round(credits * MICRO)


def from_micro(micro: int) -> float:
    return micro / MICRO


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Rate:
    """One line of the rate card: from ``effective_ms`` on, until a later line for the
    same resource."""

    resource: str
    """A GPU type, ``*`` (any other GPU type), ``cpu`` or ``mem``."""
    effective_ms: int
    micro_per_hour: int
    borrowed_micro_per_hour: int | None = None
    """For GPUs above the tenant's guarantee; None: the same as ``micro_per_hour``."""


@dataclass(frozen=True, slots=True)
class ReplicaUse:
    """What one replica holds for as long as it runs."""

    gpu_type: str
    gpu_milli: int
    """Total GPU share in thousandths (devices x share of each)."""
    cpu_milli: int = 0
    mem_mib: int = 0
    borrowed: bool = False


class RateCard:
    """Rates over time per resource; a resource without a line in force costs 0."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        by_resource: dict[str, list[Rate]] = {}
        for r in sorted(rates, key=lambda r: (r.resource, r.effective_ms)):
            by_resource.setdefault(r.resource, []).append(r)
        self._rates = by_resource
        self._lines_cache: dict[str, list[Rate]] = {}
        self._times: dict[str, list[int]] = {}

    @property
    def empty(self) -> bool:
        return not self._rates

    def lines(self) -> list[Rate]:
        return [r for rs in self._rates.values() for r in rs]

    def _gpu_lines(self, gpu_type: str) -> list[Rate]:
        return self._rates.get(gpu_type) or self._rates.get(ANY_GPU, [])

    @staticmethod
    def _at(lines: list[Rate], t_ms: int) -> Rate | None:
        found = None
        for r in lines:
            if r.effective_ms > t_ms:
                break
            found = r
        return found

    def hourly_micro(self, use: ReplicaUse, t_ms: int) -> int:
        """The replica's cost per hour at ``t_ms``, rounded down (for estimates)."""
        return self._rate_numerator(use, t_ms) // (1000 * 1024)

    def _rate_numerator(self, use: ReplicaUse, t_ms: int) -> int:
        gpu = self._at(self._gpu_lines(use.gpu_type), t_ms)
        cpu = self._at(self._rates.get(CPU_RESOURCE, []), t_ms)
        mem = self._at(self._rates.get(MEM_RESOURCE, []), t_ms)
        gpu_rate = 0
        if gpu is not None:
            gpu_rate = gpu.micro_per_hour
            if use.borrowed and gpu.borrowed_micro_per_hour is not None:
                gpu_rate = gpu.borrowed_micro_per_hour
        return (
            use.gpu_milli * gpu_rate * 1024
            + use.cpu_milli * (cpu.micro_per_hour if cpu else 0) * 1024
            + use.mem_mib * (mem.micro_per_hour if mem else 0) * 1000
        )

    def _breaks(self, use: ReplicaUse, start_ms: int, end_ms: int) -> list[int]:
        lines = self._lines_cache.get(use.gpu_type)
        if lines is None:
            lines = [
                *self._gpu_lines(use.gpu_type),
                *self._rates.get(CPU_RESOURCE, []),
                *self._rates.get(MEM_RESOURCE, []),
            ]
            self._lines_cache[use.gpu_type] = lines
        return sorted({r.effective_ms for r in lines if start_ms < r.effective_ms < end_ms})

    def exact_cost(self, use: ReplicaUse, start_ms: int, end_ms: int) -> int:
        """The numerator of the exact cost of ``[start_ms, end_ms)`` (see ``_DENOMINATOR``)."""
        if end_ms <= start_ms:
            return 0
        total = 0
        edges = [start_ms, *self._breaks(use, start_ms, end_ms), end_ms]
        for a, b in itertools.pairwise(edges):
            total += (b - a) * self._rate_numerator(use, a)
        return total

    def cost_micro(self, use: ReplicaUse, start_ms: int, end_ms: int) -> int:
        """The cost of ``[start_ms, end_ms)`` rounded down to a micro-credit."""
        return self.exact_cost(use, start_ms, end_ms) // _DENOMINATOR

    def interval_charge(self, use: ReplicaUse, run_start_ms: int, a_ms: int, b_ms: int) -> int:
        """What the metering interval ``[a_ms, b_ms)`` of a run begun at ``run_start_ms``
        is charged: the difference of the rounded cumulative costs (see the module)."""
        times = self._times.get(use.gpu_type)
        if times is None:
            self._breaks(use, 0, 0)  # fills the cache of the lines that apply to it
            times = self._times[use.gpu_type] = sorted(
                {r.effective_ms for r in self._lines_cache[use.gpu_type]}
            )
        i = bisect.bisect_right(times, run_start_ms)
        if i == len(times) or times[i] >= b_ms:  # one rate all along: a single segment
            n = self._rate_numerator(use, run_start_ms)
            return (b_ms - run_start_ms) * n // _DENOMINATOR - (
                a_ms - run_start_ms
            ) * n // _DENOMINATOR
        return self.cost_micro(use, run_start_ms, b_ms) - self.cost_micro(use, run_start_ms, a_ms)


@dataclass(frozen=True, slots=True)
class GrantState:
    """A grant and what is left of it."""

    id: int
    remaining_micro: int
    effective_ms: int
    expires_ms: int | None
    priority: int = 0

    def in_force(self, t_ms: int) -> bool:
        return self.effective_ms <= t_ms and (self.expires_ms is None or t_ms < self.expires_ms)


def draw_order(grants: Iterable[GrantState], t_ms: int) -> list[GrantState]:
    """Grants a charge at ``t_ms`` may draw from, in the order it draws: the one that
    expires first, then the lower priority number, then the older grant."""
    usable = [g for g in grants if g.in_force(t_ms) and g.remaining_micro > 0]
    return sorted(
        usable,
        key=lambda g: (
            math.inf if g.expires_ms is None else g.expires_ms,
            g.priority,
            g.effective_ms,
            g.id,
        ),
    )


def draw(
    amount_micro: int, grants: Iterable[GrantState], t_ms: int
) -> list[tuple[int | None, int]]:
    """Split a charge over grants: ``(grant id, amount)`` pairs summing to the amount; what
    no grant covers is drawn from none (``None``): the balance goes below zero."""
    out: list[tuple[int | None, int]] = []
    left = amount_micro
    for g in draw_order(grants, t_ms):
        if left <= 0:
            break
        take = min(left, g.remaining_micro)
        out.append((g.id, take))
        left -= take
    if left > 0:
        out.append((None, left))
    return out


def undo_draws(
    amount_micro: int, draws: Sequence[tuple[int | None, int]]
) -> list[tuple[int | None, int]]:
    """Where a refund of ``amount_micro`` goes back to: the grants the refunded charges
    drew from, latest draw first; any rest to no grant."""
    out: list[tuple[int | None, int]] = []
    left = amount_micro
    for grant_id, drawn in reversed(draws):
        if left <= 0:
            break
        give = min(left, drawn)
        if give > 0:
            out.append((grant_id, give))
            left -= give
    if left > 0:
        out.append((None, left))
    merged: dict[int | None, int] = {}
    for grant_id, amount in out:
        merged[grant_id] = merged.get(grant_id, 0) + amount
    return list(merged.items())


def admit(
    available_micro: int, candidates: Sequence[tuple[str, int]]
) -> tuple[list[str], list[str], int]:
    """Which pending jobs (``(id, estimated cost)`` in queue order) fit what is left after
    the reservations of running jobs; returns (admitted, held, still available). A job
    that does not fit does not block a cheaper one behind it."""
    admitted, held = [], []
    left = available_micro
    for job_id, cost in candidates:
        if left > 0 and cost <= left:
            admitted.append(job_id)
            left -= cost
        else:
            held.append(job_id)
    return admitted, held, left


def thresholds_crossed(
    granted_micro: int, balance_micro: int, thresholds: Sequence[float]
) -> list[float]:
    """The alert thresholds (fractions of the granted amount in force) that the used
    amount has reached."""
    if granted_micro <= 0:
        return []
    used = granted_micro - balance_micro
    return [t for t in thresholds if used * 1000 >= round(t * 1000) * granted_micro]
