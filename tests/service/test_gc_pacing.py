"""The scheduler process's collector: what a cycle keeps is frozen, and everything is
collected once an interval, so cyclic garbage lives an interval at most."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mosu.service.gc_pacing import GcPacer


class Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_cyclic_garbage_is_collected_within_an_interval() -> None:
    now = [0.0]
    pacer = GcPacer(full_every_s=30.0, monotonic=lambda: now[0])
    garbage = Cyclic()
    ref = weakref.ref(garbage)
    del garbage
    pacer.after_cycle()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert ref() is not None, "frozen: no collection walks it"
    now[0] = 29.9
    pacer.after_cycle()
    assert (ref() is not None, pacer.full_collections) == (True, 0)
    now[0] = 30.0
    pacer.after_cycle()
    assert (ref() is None, pacer.full_collections) == (True, 1)
    assert gc.get_freeze_count() > 0, "frozen again after the collection"


def test_what_nothing_refers_to_is_freed_at_once_even_frozen() -> None:
    pacer = GcPacer(full_every_s=30.0, monotonic=lambda: 0.0)
    kept = [Cyclic() for _ in range(3)]
    kept.append(object.__new__(Cyclic))  # no cycle: freed by its reference count
    ref = weakref.ref(kept[-1])
    pacer.after_cycle()
    kept.pop()
    assert ref() is None
