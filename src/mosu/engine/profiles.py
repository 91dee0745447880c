"""Scheduling profiles: which mechanisms a cycle runs and with which policies.

A profile is plain data; ``build_profile(name)`` returns one of the named
baselines or mosu's default, so that every policy runs in the same process on the
same input. ``PROFILES`` is the explicit registry (no import side effects). A
profile names its queue ordering and its placement from the one policy registry
(``policies.py``); ``build_profile(name, placement=...)`` swaps the placement.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mosu.core.errors import InvalidInput
from mosu.engine.ordering import LeastAttainedService, QueueOrder
from mosu.engine.placement.base import PlacementPolicy
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.policies import (
    Entry,
    PolicyContext,
    make_ordering,
    make_placement,
)


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
    FAIR_SHARE_RANK = "fair-share-rank"
    """As ``fair-share``; among equal shares (all idle, as when a cluster drains for
    whole-cluster gangs), the best-ranked pending job first rather than by name."""


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
    PRICED = "priced"
    """Lowest priority, then the least GPU-time a preemption would throw away (work
    since the last checkpoint plus the restart, times the job's GPUs: a job just past
    a checkpoint is cheapest), then as ``served``. Reclaim thus pays a guarantee with
    the cheapest victims, never a whole gang when smaller jobs free the same shape."""


class Estimator(StrEnum):
    """What the caller must put in ``Job.estimate_s`` for this profile (history's in
    ``ClusterSnapshot.history_estimates`` instead, for jobs without their own)."""

    USER = "user"
    HISTORY = "history"


@dataclass(frozen=True)
class SchedulingProfile:
    """Which mechanisms and policies one cycle uses. Defaults are mosu's mechanisms
    with the plain ``tightest`` placement (the ``mosu`` profile places with ``mosu``).

    The placement object may keep what it learns across cycles (the task mix, caches
    keyed by node): build one profile per run or deployment, never share one between
    two simulations."""

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
    price_preemption: bool = False
    """Rank preemption weighs the GPU-time its victims would lose against what the
    waiting job gains (``cycle/pricing.py``) and skips a plan that costs more. Reclaim,
    which pays a guarantee owed, is never refused for its price."""
    restart_overhead_s: float = 60.0
    """Run time a preempted job is assumed to spend restarting (priced per GPU)."""
    reclaim_at_checkpoint: bool = False
    """With ``price_preemption``: reclaim waits for its victims' next checkpoint when
    the guarantee's GPUs idle until then cost less than the work lost now."""
    checkpoint_wait_min_gpus: int = 16
    """``reclaim_at_checkpoint`` waits only for a plan with a victim of at least this
    many GPUs (a gang spanning nodes), where one checkpoint interval is worth most;
    waiting for smaller victims too cost the Philly benchmark more average JCT than
    mosu may give up (docs/scheduling.md)."""
    reclaim_wait_max_s: float = math.inf
    """``reclaim_at_checkpoint`` waits at most this long: a guarantee owed is paid
    within it even when the victims' next checkpoint is further off. A gang that
    checkpoints every two hours would otherwise hold a lab's guarantee for up to
    that long; the wait saves GPU-time but leaves what is owed unpaid."""
    reclaim_wait_max_gpu_s: float = 0.0
    """... except that a job whose GPUs idle until the checkpoint come to at most this
    many GPU-seconds waits for it however far off: what the wait leaves unpaid is
    that little, while stopping a gang mid-interval for it throws away up to an
    interval on hundreds of GPUs. A one-GPU job waits out a two-hour interval; a
    256-GPU one waits at most ``reclaim_wait_max_s``."""
    rank_spares_gpus: int = 0
    """Rank preemption never takes a job of this many GPUs or more (0: any may go).
    Under 2D-LAS a gang of hundreds of GPUs falls to the last class within minutes
    of starting, while a waiting gang stays in the first until it runs: preempting
    one gang for another by class is newest-first among gangs, says nothing about
    which ends sooner, and throws away up to a checkpoint interval on hundreds of
    GPUs each time. Such gangs still give way to a guarantee owed (reclaim) and to a
    larger gang taking back preemptible backfill."""
    overrun_min_gpus: int | None = None
    """Reservations plan a running job of at least this many GPUs that is past its
    estimate to run as long again as it has run, and a smaller one to end at once
    (None: every job past its estimate is planned to end at once).
    A gang's history estimate comes from few runs of its size, or from its tenant's
    runs of every size (mostly short), so gangs overrun it by far; a small job's
    estimate rests on many runs like it."""
    backfill_loss_gpu_s: float = 0.0
    """Preemptible backfill (0: off): a job whose preemption can lose at most this
    many GPU-seconds (its GPUs times its checkpoint interval, else its estimate, plus
    a restart) may start on nodes held for a gang of at least ``backfill_gang_gpus``
    even when it would still run at the gang's planned start; the gang takes such
    jobs back, wherever they run, when that lets it start (``cycle/backfill.py``)."""
    backfill_gang_gpus: int = 64
    """The smallest reserving job whose held nodes take preemptible backfill."""


def _tightest() -> PlacementPolicy:
    return make_placement("tightest")


def _fifo() -> SchedulingProfile:
    return SchedulingProfile(
        name="fifo",
        ordering=make_ordering("fifo"),
        placement=_tightest(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.STRICT,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
        estimator=Estimator.USER,
    )


def _fifo_backfill() -> SchedulingProfile:
    return SchedulingProfile(
        name="fifo-backfill",
        ordering=make_ordering("fifo"),
        placement=_tightest(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.BACKFILL,
        reclaim=False,
        rank_preemption=RankPreemption.NONE,
    )


def _kueue() -> SchedulingProfile:
    return SchedulingProfile(
        name="kueue",
        ordering=make_ordering("fifo"),
        placement=_tightest(),
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
        ordering=make_ordering("fifo"),
        placement=_tightest(),
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
        ordering=make_ordering("las"),
        placement=_tightest(),
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
        ordering=make_ordering("sjf-oracle"),
        placement=_tightest(),
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
        ordering=make_ordering("srtf-oracle"),
        placement=_tightest(),
        quotas=QuotaMode.STATIC,
        queue_mode=QueueMode.STRICT,
        reclaim=False,
        rank_preemption=RankPreemption.TENANT,
        victim_order=VictimOrder.NEWEST,
        min_runtime_s=0.0,
        estimator=Estimator.USER,
        needs_true_remaining=True,
    )


def _mosu() -> SchedulingProfile:
    return SchedulingProfile(
        name="mosu",
        lend_order=LendOrder.FAIR_SHARE_RANK,
        ordering=make_ordering("las-mosu"),
        placement=make_placement("mosu"),
        victim_order=VictimOrder.PRICED,
        price_preemption=True,
        reclaim_at_checkpoint=True,
        reclaim_wait_max_s=3_600.0,
        reclaim_wait_max_gpu_s=2 * 3_600.0,
        rank_spares_gpus=64,
        overrun_min_gpus=16,
        backfill_loss_gpu_s=256 * 3_600.0,
    )


PROFILES: Mapping[str, Entry[Callable[[], SchedulingProfile]]] = {
    "mosu": Entry(
        _mosu,
        "quotas with borrowing and reclaim, fair-share lending, backfill, 2D-LAS, mosu placement",
    ),
    "fifo": Entry(_fifo, "static quotas, strict FIFO per tenant, no preemption"),
    "fifo-backfill": Entry(_fifo_backfill, "static quotas, FIFO with backfill reservations"),
    "kueue": Entry(
        _kueue, "Kueue-like: borrowing and reclaim, FIFO skipping blocked jobs, newest victims"
    ),
    "drf": Entry(_drf, "one shared pool, dominant-resource fair share, FIFO"),
    "las": Entry(_las, "one shared pool, Tiresias 2D-LAS preempting across tenants"),
    "sjf-oracle": Entry(_sjf_oracle, "reference: static quotas, true shortest job first"),
    "srtf-oracle": Entry(_srtf_oracle, "reference: static quotas, true shortest remaining first"),
}
"""Every named profile. ``mosu`` is the default."""

DEFAULT_PROFILE = "mosu"


def build_profile(
    name: str = DEFAULT_PROFILE, *, placement: str | None = None, seed: int = 0
) -> SchedulingProfile:
    """The named profile, placing with the placement called ``placement`` when given
    (its tie order drawn from ``seed``); raises ``InvalidInput`` naming the choices for
    an unknown name."""
    entry = PROFILES.get(name)
    if entry is None:
        choices = ", ".join(PROFILES)
        raise InvalidInput(f"unknown policy {name!r}; choose one of: {choices}", field="policy")
    profile = entry.build()
    if placement is not None:
        rng = random.Random(seed)
        chosen = make_placement(placement, PolicyContext(rng=rng))
        profile = dataclasses.replace(profile, placement=chosen)
    return profile
