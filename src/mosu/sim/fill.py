"""The fill experiment of the FGD paper (Weng et al., ATC'23, Sec. 6).

A pod list is turned into a workload as the paper's simulator does: every pod of
the list once, shuffled with the seed, then pods drawn with replacement from the
list and appended until their total GPU request reaches ``inflation`` x the
cluster's GPU capacity (if the list alone already asks more, pods drawn at random
are dropped until it no longer does). The pods are placed one at a time, in that
order, through the engine's ``place_job``; nothing ever leaves, and a pod that
does not fit stays unplaced and is not retried.

The curve is the GPU allocation ratio (allocated GPU / capacity) against the
arrived workload (requested GPU of every pod tried so far / capacity), both in
percent. The headline is the unallocated GPU share when the arrived workload
reaches 100 % of capacity: ``100 - allocation``.

The workload depends only on the seed, never on the policy, so policies are
compared on the same pods in the same order. The policy gets its own random
stream derived from the seed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mosu.core.errors import InvalidInput
from mosu.core.models import GPU_MILLI, Node
from mosu.engine.placement import place_job
from mosu.engine.placement.taskmix import TaskMix
from mosu.engine.policies import POLICIES, PlacementFactory, PolicyContext, make_placement
from mosu.engine.state import ClusterState
from mosu.traces.schema import TraceJob

DEFAULT_INFLATION = 1.3
"""The paper's workload size: 1.3 x the cluster's GPU capacity."""
HEADLINE_ARRIVED_PCT = 100


@dataclass(frozen=True)
class FillRun:
    """One policy on one seeded workload: per pod tried, cumulative GPU milli."""

    policy: str
    seed: int
    capacity_milli: int
    arrived_milli: np.ndarray
    allocated_milli: np.ndarray
    placed: int
    unplaced: int

    def allocated_pct_at(self, arrived_pct: float) -> float:
        """Allocation (%) after the last pod whose arrival keeps the total at most
        ``arrived_pct`` % of capacity."""
        limit = arrived_pct / 100 * self.capacity_milli
        k = int(np.searchsorted(self.arrived_milli, limit, side="right"))
        allocated = self.allocated_milli[k - 1] if k else 0
        return 100.0 * float(allocated) / self.capacity_milli

    @property
    def unallocated_pct_at_100(self) -> float:
        return 100.0 - self.allocated_pct_at(HEADLINE_ARRIVED_PCT)

    def curve(self, step_pct: float = 1.0) -> list[tuple[float, float]]:
        """(arrived %, allocated %) at every ``step_pct`` up to the whole workload."""
        top = 100.0 * float(self.arrived_milli[-1]) / self.capacity_milli if self.placed else 0.0
        points = [k * step_pct for k in range(int(top // step_pct) + 1)]
        return [(round(p, 4), round(self.allocated_pct_at(p), 4)) for p in points]


def build_workload(
    pods: Sequence[TraceJob], capacity_milli: int, inflation: float, rng: random.Random
) -> list[TraceJob]:
    """The seeded, shuffled workload of the fill experiment (see the module doc)."""
    if not pods:
        raise InvalidInput("the pod list is empty")
    if inflation <= 0:
        raise InvalidInput(f"inflation must be > 0, got {inflation}")
    target = inflation * capacity_milli
    if not any(p.shape.total_gpu_milli for p in pods):
        raise InvalidInput("the pod list asks for no GPU")
    workload = list(pods)
    rng.shuffle(workload)
    total = sum(p.shape.total_gpu_milli for p in workload)
    if total > target:
        while total > target:
            victim = workload.pop(rng.randrange(len(workload)))
            total -= victim.shape.total_gpu_milli
        return workload
    while True:
        pod = pods[rng.randrange(len(pods))]
        # The paper's simulator stops at the first draw whose per-GPU share would
        # pass the target (so a multi-GPU draw may overshoot by a few GPUs).
        if total + (pod.shape.gpu_milli if pod.shape.gpus else 0) > target:
            break
        total += pod.shape.total_gpu_milli
        workload.append(pod)
    return workload


def policy_rng(seed: int) -> random.Random:
    """The policy's own stream, independent of the workload's."""
    return random.Random(seed * 1_000_003 + 7)


def run_fill(
    nodes: Sequence[Node],
    pods: Sequence[TraceJob],
    policy: str,
    seed: int,
    *,
    inflation: float = DEFAULT_INFLATION,
    registry: Mapping[str, PlacementFactory] = POLICIES,
    on_pod: Callable[[], None] | None = None,
) -> FillRun:
    """Run ``policy`` on the workload of ``seed``."""
    state = ClusterState(nodes)
    capacity = state.capacity_milli
    if not capacity:
        raise InvalidInput("the cluster has no GPU")
    workload = build_workload(pods, capacity, inflation, random.Random(seed))
    mix = TaskMix.observe((p.shape, p.gpu_types) for p in pods)
    placer = make_placement(policy, PolicyContext(task_mix=mix, rng=policy_rng(seed)), registry)
    arrived = np.zeros(len(workload), dtype=np.int64)
    allocated = np.zeros(len(workload), dtype=np.int64)
    total = placed = 0
    for k, pod in enumerate(workload):
        job = pod.to_job()
        total += job.total_gpu_milli
        placement = place_job(state, job, placer)
        if placement is not None:
            state.assign(f"{k}", placement)
            state.commit()
            placed += 1
        arrived[k] = total
        allocated[k] = state.allocated_milli
        if on_pod is not None:
            on_pod()
    return FillRun(
        policy=policy,
        seed=seed,
        capacity_milli=capacity,
        arrived_milli=arrived,
        allocated_milli=allocated,
        placed=placed,
        unplaced=len(workload) - placed,
    )


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, min(values), max(values))


def summarize(runs: Sequence[FillRun]) -> dict[str, object]:
    """The fill.json entry of one policy: headline statistics and the mean curve."""
    heads = [r.unallocated_pct_at_100 for r in runs]
    s = Summary.of(heads)
    curves = [dict(r.curve()) for r in runs]
    common = sorted(set.intersection(*(set(c) for c in curves)))
    curve = [[p, round(statistics.fmean(c[p] for c in curves), 4)] for p in common]
    return {
        "unallocated_pct_at_100": {
            "mean": round(s.mean, 4),
            "sd": round(s.sd, 4),
            "min": round(s.min, 4),
            "max": round(s.max, 4),
        },
        "per_seed": {str(r.seed): round(h, 4) for r, h in zip(runs, heads, strict=True)},
        "placed": [r.placed for r in runs],
        "unplaced": [r.unplaced for r in runs],
        "curve": curve,
    }


def gpus(nodes: Sequence[Node]) -> int:
    return sum(n.gpus for n in nodes)


def workload_size(pods: Sequence[TraceJob], nodes: Sequence[Node], inflation: float) -> int:
    """About how many pods one run tries (for progress bars)."""
    mean = sum(p.shape.total_gpu_milli for p in pods) / max(len(pods), 1)
    target = inflation * gpus(nodes) * GPU_MILLI
    return max(len(pods), math.ceil(target / mean)) if mean else len(pods)
