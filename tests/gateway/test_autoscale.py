"""The autoscaler's decision on made-up times (table-style), and per-key limits."""

from __future__ import annotations

import pytest

from mosu.gateway.limits import KeyLimits
from mosu.service.autoscale import ScalingMemory, ScalingRule, decide, gauge_value, wanted

RULE = ScalingRule(
    min_replicas=0, max_replicas=4, target_inflight=2, up_delay_s=10, down_delay_s=60
)


@pytest.mark.parametrize(
    ("inflight", "metric", "expected"),
    [(0, None, 0), (1, None, 1), (2, None, 1), (3, None, 2), (100, None, 4), (0, 5.0, 3)],
)
def test_wanted_replicas(inflight: float, metric: float | None, expected: int) -> None:
    rule = ScalingRule(0, 4, 2, 10, 60, metric_target=2.0)
    assert wanted(rule, inflight, metric) == expected


# (time, in-flight requests) → desired replicas after the step, from 1 replica.
TIMELINE = [
    (0, 2, 1),  # at target
    (1, 8, 1),  # load 4x: asks for more from now on
    (6, 8, 1),  # still within the 10 s up delay
    (11, 8, 4),  # held 10 s: up to 4
    (12, 1, 4),  # load falls: the down delay starts
    (50, 1, 4),
    (72, 1, 1),  # held below 60 s: down to 1
    (80, 0, 1),
    (139, 0, 1),
    (140, 0, 0),  # idle for the down delay: scaled to zero
    (141, 1, 1),  # a request waits: from zero at once, no up delay
]


def test_load_step_timeline_with_delays() -> None:
    memory, desired = ScalingMemory(), 1
    for now, inflight, expected in TIMELINE:
        desired = decide(RULE, memory, desired=desired, inflight=inflight, now=now)
        assert desired == expected, f"at t={now}"


def test_a_dip_restarts_the_up_delay() -> None:
    memory = ScalingMemory()
    assert decide(RULE, memory, desired=1, inflight=8, now=0) == 1
    assert decide(RULE, memory, desired=1, inflight=2, now=5) == 1  # back at target
    assert decide(RULE, memory, desired=1, inflight=8, now=9) == 1
    assert decide(RULE, memory, desired=1, inflight=8, now=18) == 1  # 9 s since the dip
    assert decide(RULE, memory, desired=1, inflight=8, now=19) == 4


def test_bounds_hold_whatever_the_load() -> None:
    rule = ScalingRule(
        min_replicas=2, max_replicas=3, target_inflight=1, up_delay_s=0, down_delay_s=0
    )
    assert decide(rule, ScalingMemory(), desired=2, inflight=0, now=0) == 2
    assert decide(rule, ScalingMemory(), desired=2, inflight=50, now=0) == 3


def test_gauge_value_sums_label_sets_and_ignores_longer_names() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="a"} 2\n'
        'vllm:num_requests_waiting{model_name="b"} 3.5\n'
        "vllm:num_requests_waiting_total 99\n"
    )
    assert gauge_value(text, "vllm:num_requests_waiting") == 5.5
    assert gauge_value(text, "absent") == 0


def test_requests_per_minute_then_retry_after_the_oldest_leaves() -> None:
    limits = KeyLimits()
    assert limits.admit(1, 2, None, now=0.0) is None
    assert limits.admit(1, 2, None, now=10.0) is None
    assert limits.admit(1, 2, None, now=20.0) == pytest.approx(40.0)
    assert limits.admit(2, 2, None, now=20.0) is None  # another key has its own window
    assert limits.admit(1, 2, None, now=60.5) is None


def test_tokens_per_minute() -> None:
    limits = KeyLimits()
    assert limits.admit(1, None, 100, now=0.0) is None
    limits.add_tokens(1, 70, now=1.0)
    assert limits.admit(1, None, 100, now=2.0) is None
    limits.add_tokens(1, 40, now=3.0)
    # 110 used: the first 70 must leave the window (at 61 s) to be under 100 again.
    assert limits.admit(1, None, 100, now=4.0) == pytest.approx(57.0)
    assert limits.admit(1, None, 100, now=61.5) is None
