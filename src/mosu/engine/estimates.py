"""Runtime estimates from what a real scheduler knows.

A job's estimate is the user's own if given; otherwise the median run time of the
last finished jobs of the same tenant and size, then of the tenant, then of
everyone. The estimator is pure: it learns only from finished jobs the caller
feeds it (``observe``), in the order they finished, and never reads a clock.
"""

from __future__ import annotations

from collections import deque
from statistics import median


class HistoryEstimator:
    """Median of recent finished run times, by (tenant, GPUs), tenant, then overall."""

    def __init__(self, window: int = 32) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._by_size: dict[tuple[str, int], deque[float]] = {}
        self._by_tenant: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=window)

    def observe(self, tenant: str, gpu_milli: int, run_s: float) -> None:
        """Learn from one finished job: its tenant, total GPU milli and run time."""
        for store, key in ((self._by_size, (tenant, gpu_milli)), (self._by_tenant, tenant)):
            seen = store.get(key)  # type: ignore[arg-type]
            if seen is None:
                seen = store[key] = deque(maxlen=self.window)  # type: ignore[index]
            seen.append(run_s)
        self._all.append(run_s)

    def estimate(self, tenant: str, gpu_milli: int, user_estimate_s: float | None) -> float | None:
        """The user's estimate, else the history median, else None."""
        if user_estimate_s is not None:
            return user_estimate_s
        for seen in (self._by_size.get((tenant, gpu_milli)), self._by_tenant.get(tenant)):
            if seen:
                return float(median(seen))
        return float(median(self._all)) if self._all else None
