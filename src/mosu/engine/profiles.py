"""Scheduling profiles: which mechanisms a cycle runs and with which policies.

A profile is plain data; ``build_profile(name)`` returns one of the named
baselines or mosu's default, so that every policy runs in the same process on the
same input. ``PROFILES`` is the explicit registry (no import side effects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mosu.core.errors import InvalidInput
from mosu.engine.ordering import (
    Fifo,
    LeastAttainedService,
    QueueOrder,
    ShortestJobOracle,
    ShortestRemainingOracle,
)
from mosu.engine.placement.base import PlacementPolicy
from mosu.engine.placement.bestfit import BestFit


class QuotaMode(StrEnum):
    STATIC = "static"
    """Each tenant holds at most its guarantee: static partitions, no borrowing."""
    BORROW = "borrow"
    """Guarantees are honoured; idle capacity is lent up to each tenant's limit."""
    SHARED = "shared"
    """One pool: guarantees and limits are ignored."""


class QueueMode(StrEnum):
    STRICT = "strict"
    """The first job of a tenant that cannot start blocks the rest of that tenant."""
    SKIP = "skip"
    """A job that cannot start is passed over (best-effort FIFO)."""
    BACKFILL = "backfill"
    """A blocked job gets a reservation; later jobs start only if they do not delay it."""


class LendOrder(StrEnum):
    FAIR_SHARE = "fair-share"
    """Lowest dominant share / weight borrows first."""
    QUEUE = "queue"
    """Borrowers in the order of their best-ranked pending job."""


class RankPreemption(StrEnum):
    NONE = "none"
    TENANT = "tenant"
    """A better-ranked job may displace a worse-ranked one of its own tenant."""
    BORROWED = "borrowed"
    """... or a worse-ranked job running on borrowed capacity of any tenant."""
    ANY = "any"
    """... or any worse-ranked job (one shared pool)."""


class VictimOrder(StrEnum):
    CHEAPEST = "cheapest"
    """Lowest priority, least work lost since the last checkpoint, smallest; the victim
    search then prefers the plan with the fewest jobs among equally cheap ones."""
    NEWEST = "newest"
    """Lowest priority, most recently started (what Kueue does)."""
    SERVED = "served"
    """Lowest priority, then the most served (the worst class of a preemptive ordering
    such as LAS: likely long jobs, so a short one is rarely the victim), then least
    work lost since the last checkpoint, then the most service received, then
    smallest."""


class Estimator(StrEnum):
    """What the caller must put in ``Job.estimate_s`` for this profile."""

    USER = "user"
    HISTORY = "history"


@dataclass(frozen=True)
class SchedulingProfile:
    """Which mechanisms and policies one cycle uses. Defaults are mosu's."""

    name: str = "default"
    placement: PlacementPolicy = field(default_factory=BestFit)
    ordering: QueueOrder = field(default_factory=LeastAttainedService)
    quotas: QuotaMode = QuotaMode.BORROW
    queue_mode: QueueMode = QueueMode.BACKFILL
    lend_order: LendOrder = LendOrder.FAIR_SHARE
    reclaim: bool = True
    rank_preemption: RankPreemption = RankPreemption.BORROWED
    victim_order: VictimOrder = VictimOrder.CHEAPEST
    min_runtime_s: float = 120.0
    """Reclaim and rank preemption never pick a job that has run less than this."""
    max_reservations: int = 4
    """Backfill: blocked jobs that get a reservation in one cycle."""
    default_estimate_s: float = 3_600.0
    """Runtime assumed for a job with no estimate when planning reservations."""
    max_preemption_attempts: int = 16
    """Victim searches per cycle for rank preemption; bounds a cycle's cost."""
    estimator: Estimator = Estimator.HISTORY
    needs_true_remaining: bool = False
    """Oracle references only: the caller fills ``ClusterSnapshot.true_remaining_s``."""


def _fifo() -> SchedulingProfile:
    return SchedulingProfile(
        name="fifo",
        ordering=Fifo(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.STRICT,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
        estimator=Estimator.USER,
    )


def _fifo_backfill() -> SchedulingProfile:
    return SchedulingProfile(
        name="fifo-backfill",
        ordering=Fifo(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.BACKFILL,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
    )


def _kueue() -> SchedulingProfile:
    return SchedulingProfile(
        name="kueue",
        ordering=Fifo(),
        quotas=QuotaMode.BORROW,
        queue_mode=QueueMode.SKIP,
        lend_order=LendOrder.QUEUE,
        reclaim=True,
        rank_preemption=RankPreemption.TENANT,
        victim_order=VictimOrder.NEWEST,
        min_runtime_s=0.0,
        estimator=Estimator.USER,
    )


def _drf() -> SchedulingProfile:
    return SchedulingProfile(
        name="drf",
        ordering=Fifo(),
        quotas=QuotaMode.SHARED,
        queue_mode=QueueMode.SKIP,
        lend_order=LendOrder.FAIR_SHARE,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
        estimator=Estimator.USER,
    )


def _las() -> SchedulingProfile:
    return SchedulingProfile(
        name="las",
        ordering=LeastAttainedService(),
        quotas=QuotaMode.SHARED,
        queue_mode=QueueMode.SKIP,
        lend_order=LendOrder.QUEUE,
        reclaim=False,
        rank_preemption=RankPreemption.ANY,
        victim_order=VictimOrder.NEWEST,
        min_runtime_s=0.0,
        estimator=Estimator.USER,
    )


def _sjf_oracle() -> SchedulingProfile:
    return SchedulingProfile(
        name="sjf-oracle",
        ordering=ShortestJobOracle(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.STRICT,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
        estimator=Estimator.USER,
        needs_true_remaining=True,
    )


def _srtf_oracle() -> SchedulingProfile:
    return SchedulingProfile(
        name="srtf-oracle",
        ordering=ShortestRemainingOracle(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.STRICT,
        reclaim=False,
        rank_preemption=RankPreemption.TENANT,
        victim_order=VictimOrder.NEWEST,
        min_runtime_s=0.0,
        estimator=Estimator.USER,
        needs_true_remaining=True,
    )


MOSU_LAS_THRESHOLDS_GPU_S = (7_200.0, 36_000.0)
"""mosu demotes a job after 2 GPU-hours, not Tiresias's 1: most jobs of a busy tenant
still running at 1 GPU-hour are about as close to done as a fresh one, so demoting
them there preempts them for no gain (measured in docs/scheduling.md)."""


def _mosu() -> SchedulingProfile:
    return SchedulingProfile(
        name="mosu",
        ordering=LeastAttainedService(thresholds_gpu_s=MOSU_LAS_THRESHOLDS_GPU_S),
        victim_order=VictimOrder.SERVED,
    )


PROFILES: dict[str, Callable[[], SchedulingProfile]] = {
    "mosu": _mosu,
    "fifo": _fifo,
    "fifo-backfill": _fifo_backfill,
    "kueue": _kueue,
    "drf": _drf,
    "las": _las,
    "sjf-oracle": _sjf_oracle,
    "srtf-oracle": _srtf_oracle,
}
"""Every named profile. ``mosu`` is the default."""

DEFAULT_PROFILE = "mosu"


def build_profile(name: str = DEFAULT_PROFILE) -> SchedulingProfile:
    """The named profile; raises ``InvalidInput`` naming the choices for an unknown one."""
    factory = PROFILES.get(name)
    if factory is None:
        choices = ", ".join(PROFILES)
        raise InvalidInput(f"unknown policy {name!r}; choose one of: {choices}", field="policy")
    return factory()
