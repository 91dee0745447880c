"""Garbage collection paced to the scheduling loop.

The scheduler keeps its state in memory between cycles (the queue, running jobs, nodes:
hundreds of thousands of objects with a deep queue) and each cycle replaces many of
them (a moved estimate rebuilds every pending job of a size). Left to its allocation
counters, the collector then walks the whole heap every cycle or two: with 1,000 nodes
and 20,000 pending jobs, about as much CPU as the cycle itself.

What a cycle leaves behind is frozen once it ends (``gc.freeze``: out of every
collection's walk, still freed by reference counting the moment nothing refers to it),
so a collection walks only what the current cycle made. Reference cycles among frozen
objects would never be collected, so every ``FULL_EVERY_S`` everything is unfrozen and
collected once: cyclic garbage lives that long at most.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_EVERY_S = 30.0


class GcPacer:
    def __init__(
        self,
        *,
        full_every_s: float = FULL_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._full_every_s = full_every_s
        self._monotonic = monotonic
        self._last_full = monotonic()
        self.full_collections = 0

    def after_cycle(self) -> None:
        """Call between cycles: freeze what is kept, or once an interval collect it all."""
        now = self._monotonic()
        if now - self._last_full >= self._full_every_s:
            self._last_full = now
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
        gc.freeze()
