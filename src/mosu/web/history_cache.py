"""The cluster's history, read at most once per ``max_age_s`` and shared by every page.

Reading a week of allocations and pending transitions costs a second of CPU on a
store with 50,000 jobs a month; a page must answer in tens of milliseconds. So the
history is read off the request path: the first page after start reads it (and waits),
later pages get the last reading, and a reading older than ``max_age_s`` is refreshed
by a background thread while pages keep getting the previous one. The live numbers on
each page (what is held, pending and free right now) are always read fresh.
``max_age_s = 0`` reads on every request, in the request (tests).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from mosu.service.services.auth import Principal
from mosu.service.services.history import (
    ClusterHistory,
    HistoryView,
    TenantSteps,
    cluster_history,
)
from mosu.sim.metrics import quota_attainment
from mosu.sim.records import SimLog, UsageSample

log = logging.getLogger("mosu.web")
T = TypeVar("T")


@dataclass(frozen=True)
class Reading:
    history: ClusterHistory
    attainment: dict[str, float | None]
    """Quota attainment per tenant over the longest window (``mosu.sim.metrics``)."""
    read_at: float
    seconds: float
    """How long reading and summing took."""
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """What pages derive from this reading (views, chart payloads), kept with it: the
    reading never changes, so neither do they."""

    def view(self, principal: Principal) -> HistoryView:
        return self.memoized(("view", principal.tenant), lambda: self.history.view(principal))

    def memoized(self, key: Any, make: Callable[[], T]) -> T:
        # Two requests may both make a value; either result is the same.
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]


def read(sessions: Callable[[], Session], now: float) -> Reading:
    began = time.perf_counter()
    with sessions() as s:
        history = cluster_history(s, now=now)
    steps = history.steps
    start = min(w.start for w in history.windows.values())
    # The live store is summarised with the simulator's one definition of the metric.
    log_ = SimLog(
        outcomes=(),
        usage=tuple(UsageSample(*sample) for sample in steps.samples),
        capacity_milli=steps.capacity_milli,
        start_s=start,
        end_s=now,
        guarantees=steps.guarantees,
        weights=steps.weights,
    )
    attainment = quota_attainment(log_)
    # The steps are tens of thousands of small tuples: kept, every garbage collection of
    # the server would walk them. Only their result stays.
    history = dataclasses.replace(history, steps=TenantSteps())
    return Reading(history, attainment, now, time.perf_counter() - began)


class HistoryCache:
    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._max_age_s = max_age_s
        self._clock = clock
        self._reading: Reading | None = None
        self._lock = threading.Lock()
        self._refreshing: threading.Thread | None = None

    def get(self) -> Reading:
        now = self._clock()
        current = self._reading
        if current is None or self._max_age_s <= 0:
            with self._lock:
                if self._reading is None or self._max_age_s <= 0:
                    self._reading = read(self._sessions, self._clock())
                return self._reading
        if now - current.read_at > self._max_age_s:
            self._refresh_in_background()
        return current

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return
            self._refreshing = threading.Thread(
                target=self._refresh, name="mosu-web-history", daemon=True
            )
            self._refreshing.start()

    def _refresh(self) -> None:
        try:
            self._reading = read(self._sessions, self._clock())
        except Exception:  # a failed refresh keeps the last reading; the next page retries
            log.exception("reading the dashboard's history failed")

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait for a refresh in progress (shutdown, tests)."""
        thread = self._refreshing
        if thread is not None:
            thread.join(timeout_s)
