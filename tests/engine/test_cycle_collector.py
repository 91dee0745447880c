"""A cycle pauses Python's cyclic garbage collector and leaves it as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mosu.core.models import Shape, Tenant
from mosu.engine.cycle import schedule
from mosu.engine.placement.base import Candidates
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.profiles import SchedulingProfile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node


class Watching(BestFit):
    """Best fit that notes whether the collector was on at each ``select``."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        self.seen.append(gc.isenabled())
        return super().select(state, shape, candidates)


class Failing(BestFit):
    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        raise RuntimeError("placement failed")


def _snapshot() -> ClusterSnapshot:
    return ClusterSnapshot(
        now=0.0,
        nodes=(node("n0"), node("n1")),
        tenants=(Tenant("t"),),
        running=(),
        pending=(job("a", 4), job("b", 2)),
    )


@pytest.fixture
def collector() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector")
def test_the_collector_is_off_during_a_cycle_and_on_again_after() -> None:
    gc.enable()
    policy = Watching()
    result = schedule(_snapshot(), SchedulingProfile(placement=policy))
    assert [s.job_id for s in result.starts] == ["a", "b"]
    assert policy.seen and not any(policy.seen)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_a_caller_that_keeps_the_collector_off_finds_it_off() -> None:
    gc.disable()
    schedule(_snapshot(), SchedulingProfile(placement=Watching()))
    assert not gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_a_cycle_that_raises_still_turns_the_collector_back_on() -> None:
    gc.enable()
    with pytest.raises(RuntimeError, match="placement failed"):
        schedule(_snapshot(), SchedulingProfile(placement=Failing()))
    assert gc.isenabled()
