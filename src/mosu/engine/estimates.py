"""Runtime and start-time estimates from what a real scheduler knows.

A job's runtime estimate (``HistoryEstimator.estimate``, what profiles with the
history estimator plan with) is the user's own if given; otherwise the median run
time of the last finished jobs of the same tenant and size, then of the tenant, then
of everyone. Start-time estimates read ``HistoryEstimator.runtime`` instead, which
never invents: the user's estimate, else the tenant's history for the size, else
the cluster's history for the kind and size, else unknown.

``WaitSpread`` says how sure a start-time estimate is: it learns, from jobs that
started, how far their real wait fell from the planned one; the plan is the likely
start, and the late bound scales the planned wait by a high percentile of those
errors. ``StartEstimates`` carries both, and the stop grace, into a
cycle (``ClusterSnapshot.estimates``).

Everything here is pure: it learns only from what the caller feeds it
(``observe``), in order, and never reads a clock.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import median
from typing import Any

from mosu.core.models import GPU_MILLI, Job


class HistoryEstimator:
    """Median of recent finished run times, by (tenant, GPUs), tenant, then overall."""

    def __init__(self, window: int = 32) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._by_size: dict[tuple[str, int], deque[float]] = {}
        self._by_tenant: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=window)
        self._by_kind: dict[tuple[str, int], deque[float]] = {}
        self._history_of: dict[tuple[str, str, int], list[float] | None] = {}
        """(tenant, kind, size) -> the sorted run times ``runtime`` reads, kept until the
        next ``observe``: asked for every running job in a cycle that estimates."""

    def observe(self, tenant: str, gpu_milli: int, run_s: float, kind: str | None = None) -> None:
        """Learn from one finished job: its tenant, total GPU milli, run time and kind."""
        stores: list[tuple[dict[Any, deque[float]], object]] = [
            (self._by_size, (tenant, gpu_milli)),
            (self._by_tenant, tenant),
        ]
        if kind is not None:
            stores.append((self._by_kind, (kind, gpu_milli)))
        for store, key in stores:
            seen = store.get(key)
            if seen is None:
                seen = store[key] = deque(maxlen=self.window)
            seen.append(run_s)
        self._all.append(run_s)
        if self._history_of:
            self._history_of.clear()

    def runtime(self, job: Job, user_estimate_s: float | None = None) -> float | None:
        """What a start-time estimate assumes ``job`` runs: the user's estimate, else
        the median of its tenant's jobs of its size, else of the cluster's jobs of its
        kind and size; None (unknown) without any of these."""
        return self.runtime_after(job, 0.0, user_estimate_s)

    def runtime_after(
        self, job: Job, ran_s: float, user_estimate_s: float | None = None
    ) -> float | None:
        """``runtime`` for a job that has run ``ran_s`` so far: the median of the run
        times in its history longer than that; past all of them (or past the user's
        estimate), twice what it has run: run times are heavy-tailed, and the longer a
        job has run the longer it likely runs. The user's estimate is ``user_estimate_s``
        (``job.estimate_s`` may hold a history estimate a profile planned with)."""
        if user_estimate_s is not None:
            return user_estimate_s if user_estimate_s > ran_s else 2 * ran_s
        size = job.total_gpu_milli
        key = (job.tenant, job.kind, size)
        if key in self._history_of:
            ordered = self._history_of[key]
        else:
            ordered = None
            for seen in (
                self._by_size.get((job.tenant, size)),
                self._by_kind.get((job.kind, size)),
            ):
                if seen:
                    ordered = sorted(seen)
                    break
            self._history_of[key] = ordered
        if ordered is None:
            return None
        first = bisect.bisect_right(ordered, ran_s)
        if first == len(ordered):
            return 2 * ran_s
        longer = len(ordered) - first
        mid = first + longer // 2
        if longer % 2:
            return ordered[mid]
        return (ordered[mid - 1] + ordered[mid]) / 2

    def estimate(self, tenant: str, gpu_milli: int, user_estimate_s: float | None) -> float | None:
        """The user's estimate, else the history median, else None."""
        if user_estimate_s is not None:
            return user_estimate_s
        for seen in (self._by_size.get((tenant, gpu_milli)), self._by_tenant.get(tenant)):
            if seen:
                return float(median(seen))
        return float(median(self._all)) if self._all else None


class EtaBasis(StrEnum):
    """What a start-time estimate waits for."""

    RECLAIM = "reclaim"
    """Borrowed capacity coming back: borrowers passing their minimum runtime."""
    RELEASES = "releases"
    """Running jobs ending (by their estimates), behind the jobs ranked ahead."""


SPREAD_FLOOR_S = 60.0
"""Errors are learnt as ratios of (wait + this): a planned wait of zero still has a
spread, and errors of a few seconds on short waits do not dominate."""
DEFAULT_SPREAD = {"reclaim": (1.0, 1.0), "releases": (1.0, 3.0)}
"""(likely, late) ratios by basis before enough jobs have started to learn from: a
reclaim waits for minimum runtimes, known exactly; releases wait for run times,
which are estimates."""
SPREAD_MIN_SAMPLES = 8
LATE_QUANTILE = 0.97
"""Above the 90 % it promises: the spread learns only from jobs that started, so the
longest waits of the moment are learnt last (measured on Philly: 0.9 held 85 %)."""


def size_class(gpu_milli: int) -> int:
    """Sizes grouped by powers of two of whole GPUs: 1, 2, 3-4, 5-8, ..."""
    gpus = max(1, -(-gpu_milli // GPU_MILLI))
    return (gpus - 1).bit_length()


class WaitSpread:
    """How far real waits fell from planned ones, by basis, pending reason and size class
    (then by basis and reason, then by basis alone, while a finer group has too few)."""

    def __init__(self, window: int = 256) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._seen: dict[tuple[str, str, int], deque[float]] = {}
        self._ratios: dict[tuple[str, str, int], tuple[float, float]] = {}

    @staticmethod
    def _keys(basis: str, reason: str, gpu_milli: int) -> tuple[tuple[str, str, int], ...]:
        return ((basis, reason, size_class(gpu_milli)), (basis, reason, -1), (basis, "", -1))

    def observe(
        self, basis: str, reason: str, gpu_milli: int, planned_wait_s: float, real_wait_s: float
    ) -> None:
        """Learn from one job that started: its planned wait and its real one."""
        real = max(0.0, real_wait_s) + SPREAD_FLOOR_S
        ratio = real / (max(0.0, planned_wait_s) + SPREAD_FLOOR_S)
        for key in self._keys(basis, reason, gpu_milli):
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = deque(maxlen=self.window)
            seen.append(ratio)
            self._ratios.pop(key, None)

    def ratios(self, basis: str, reason: str, gpu_milli: int) -> tuple[float, float]:
        """(likely, late) ratios for this basis, reason and size. The likely start is the
        plan itself: scaling plans by the median learnt ratio made them worse (errors
        are not biased one way; each plan knows more than the group's median). The
        late bound is the learnt ratios' ``LATE_QUANTILE``."""
        for key in self._keys(basis, reason, gpu_milli):
            seen = self._seen.get(key)
            if seen is None or len(seen) < SPREAD_MIN_SAMPLES:
                continue
            found = self._ratios.get(key)
            if found is None:
                ordered = sorted(seen)
                found = self._ratios[key] = (1.0, _quantile(ordered, LATE_QUANTILE))
            return found
        return DEFAULT_SPREAD.get(basis, (1.0, 3.0))

    def bounds(
        self, basis: str, reason: str, gpu_milli: int, planned_wait_s: float
    ) -> tuple[float, float]:
        """(likely wait, late bound) in seconds for a planned wait."""
        mid, late = self.ratios(basis, reason, gpu_milli)
        base = max(0.0, planned_wait_s) + SPREAD_FLOOR_S
        likely = max(0.0, base * mid - SPREAD_FLOOR_S)
        return likely, max(likely, base * late - SPREAD_FLOOR_S)


def _quantile(ordered: list[float], q: float) -> float:
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class StartEstimates:
    """What a cycle reads to estimate start times, kept by the caller across cycles."""

    runtimes: HistoryEstimator = field(default_factory=HistoryEstimator)
    spread: WaitSpread = field(default_factory=WaitSpread)
    stop_grace_s: float = 0.0
    """How long a preempted job may take to stop (the platform's grace period)."""
    user_estimates: Mapping[str, float | None] | None = None
    """Job id -> the user's own estimate, when ``Job.estimate_s`` holds history-filled
    ones (profiles with the history estimator); None: ``Job.estimate_s`` is the user's."""

    def user_estimate(self, job: Job) -> float | None:
        if self.user_estimates is None:
            return job.estimate_s
        return self.user_estimates.get(job.id)
