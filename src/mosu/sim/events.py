"""Events of the replay loop, kept on a heap of ``(time, kind, seq, ...)``.

At one instant completions come first (they free capacity), then arrivals, then
wakes, then changes of the configuration (all before the instant's cycle); the
sequence number makes every order total, so a replay is deterministic.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from enum import IntEnum


class EventKind(IntEnum):
    COMPLETION = 0
    ARRIVAL = 1
    WAKE = 2
    """A cycle the engine asked for (``CycleResult.wake_at_s``); nothing else happens."""
    CHANGE = 3
    """A timed change of quotas or nodes (``attempt``: its index in the replay's list)."""


@dataclass(order=True, frozen=True, slots=True)
class Event:
    time_s: float
    kind: EventKind
    seq: int
    job_id: str = field(compare=False)
    attempt: int = field(compare=False, default=0)
    """For a completion: which start of the job it ends (stale after a preemption)."""


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0

    def push(self, time_s: float, kind: EventKind, job_id: str, attempt: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Event(time_s, kind, self._seq, job_id, attempt))

    def pop_instant(self) -> list[Event]:
        """Every event of the earliest instant, in order."""
        first = heapq.heappop(self._heap)
        batch = [first]
        while self._heap and self._heap[0].time_s == first.time_s:
            batch.append(heapq.heappop(self._heap))
        return batch

    def __bool__(self) -> bool:
        return bool(self._heap)
