"""Runtime estimates come only from the user or from finished jobs fed in."""

from __future__ import annotations

import pytest

from mosu.engine.estimates import HistoryEstimator
from mosu.engine.ordering import LeastAttainedService


@pytest.mark.parametrize(
    ("name", "finished", "ask", "user", "want"),
    [
        ("the user's estimate wins over history", [("a", 1000, 50.0)], ("a", 1000), 7.0, 7.0),
        ("no history and no user estimate gives none", [], ("a", 1000), None, None),
        (
            "the median of the same tenant and size",
            [("a", 1000, 10.0), ("a", 1000, 30.0), ("a", 1000, 20.0), ("a", 8000, 999.0)],
            ("a", 1000),
            None,
            20.0,
        ),
        (
            "an unseen size falls back to the tenant",
            [("a", 1000, 10.0), ("a", 2000, 30.0), ("b", 4000, 1e6)],
            ("a", 4000),
            None,
            20.0,
        ),
        (
            "an unseen tenant falls back to everyone",
            [("a", 1000, 10.0), ("b", 1000, 30.0), ("c", 1000, 50.0)],
            ("z", 1000),
            None,
            30.0,
        ),
    ],
)
def test_history_estimate(
    name: str,
    finished: list[tuple[str, int, float]],
    ask: tuple[str, int],
    user: float | None,
    want: float | None,
) -> None:
    est = HistoryEstimator()
    for tenant, milli, run_s in finished:
        est.observe(tenant, milli, run_s)
    assert est.estimate(ask[0], ask[1], user) == want


def test_history_forgets_beyond_its_window() -> None:
    est = HistoryEstimator(window=2)
    for run_s in (1_000.0, 10.0, 20.0):
        est.observe("a", 1000, run_s)
    assert est.estimate("a", 1000, None) == 15.0


@pytest.mark.parametrize(
    ("service", "want_queue"), [(0.0, 0), (3_599.0, 0), (3_600.0, 1), (40_000.0, 2)]
)
def test_las_queue_is_set_by_gpu_seconds_of_service(service: float, want_queue: int) -> None:
    assert LeastAttainedService().queue_of(service) == want_queue
