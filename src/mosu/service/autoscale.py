"""The autoscaler's decision, pure: the load a service saw and the time, in; the replicas
it should have, out. No clock and no I/O here, so it is tested table-style on made-up
times and driven by the service controller on the real one."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScalingRule:
    min_replicas: int
    max_replicas: int
    target_inflight: float
    up_delay_s: float
    down_delay_s: float
    metric_target: float | None = None


@dataclass(slots=True)
class ScalingMemory:
    """Since when the load has asked for more (or fewer) replicas than there are."""

    above_since: float | None = None
    below_since: float | None = None


def wanted(rule: ScalingRule, inflight: float, metric: float | None = None) -> int:
    """Replicas the load needs now, within the rule's bounds; any request needs one."""
    need = math.ceil(inflight / rule.target_inflight) if inflight > 0 else 0
    if metric is not None and rule.metric_target:
        need = max(need, math.ceil(metric / rule.metric_target))
    return max(rule.min_replicas, min(rule.max_replicas, need))


def decide(
    rule: ScalingRule,
    memory: ScalingMemory,
    *,
    desired: int,
    inflight: float,
    now: float,
    metric: float | None = None,
) -> int:
    """The new desired count. Up only after the load has stayed above for ``up_delay_s``
    (at once from zero: a request is waiting for the first replica), down only after it
    has stayed below for ``down_delay_s``; a change restarts both clocks."""
    need = wanted(rule, inflight, metric)
    desired = max(rule.min_replicas, min(rule.max_replicas, desired))
    if need > desired:
        memory.below_since = None
        if desired == 0:
            memory.above_since = None
            return need
        if memory.above_since is None:
            memory.above_since = now
        if now - memory.above_since >= rule.up_delay_s:
            memory.above_since = None
            return need
        return desired
    if need < desired:
        memory.above_since = None
        if memory.below_since is None:
            memory.below_since = now
        if now - memory.below_since >= rule.down_delay_s:
            memory.below_since = None
            return need
        return desired
    memory.above_since = memory.below_since = None
    return desired


def gauge_value(text: str, name: str) -> float:
    """Sum of a gauge's samples in Prometheus text (every label set); 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if rest[:1] not in ("{", " "):
            continue  # another metric whose name starts with this one
        try:
            total += float(rest.rsplit(" ", 1)[-1])
        except ValueError:
            continue
    return total
