"""Every policy mosu ships, by name: queue orderings and placements.

One explicit registry, nothing registered on import. Profiles (``profiles.py``),
``mosu sim fill``, ``mosu sim replay``, the benchmarks and the service all build
their policies here, so a name means the same policy everywhere. Each entry has a
one-line description, which ``mosu policy list`` prints.

A placement factory takes a :class:`PolicyContext`: the task mix expected to
arrive (the fill experiment knows it up front; a cycle's placement learns it from
the live queue instead, see ``PlacementPolicy.learn``) and a seeded
``random.Random`` for tie orders.

To add a policy: write its class (an ordering in ``ordering.py``, a placement in
``placement/``), then add one entry below.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mosu.core.errors import InvalidInput
from mosu.engine.ordering import (
    Fifo,
    GangScaledLAS,
    LeastAttainedService,
    QueueOrder,
    ShortestJobOracle,
    ShortestRemainingOracle,
    ShortestRemainingServiceOracle,
)
from mosu.engine.placement.base import PlacementPolicy
from mosu.engine.placement.bestfit import BestFit, BestFitScore
from mosu.engine.placement.clustering import Clustering
from mosu.engine.placement.dotprod import DotProduct
from mosu.engine.placement.fgd import Fgd
from mosu.engine.placement.mosu import Mosu
from mosu.engine.placement.packing import Packing
from mosu.engine.placement.randomfit import RandomFit
from mosu.engine.placement.taskmix import TaskMix, TaskType


@dataclass(frozen=True)
class PolicyContext:
    """What a placement may know when it is built."""

    task_mix: TaskMix = field(default_factory=TaskMix)
    rng: random.Random = field(default_factory=lambda: random.Random(0))


PlacementFactory = Callable[[PolicyContext], PlacementPolicy]
F = TypeVar("F")


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One named policy: how to build it and what it does, in a line."""

    build: F
    description: str


MOSU_LAS_THRESHOLDS_GPU_S = (7_200.0, 36_000.0)
"""mosu demotes a job after 2 GPU-hours, not Tiresias's 1: most jobs of a busy tenant
still running at 1 GPU-hour are about as close to done as a fresh one, so demoting
them there preempts them for no gain (measured in docs/scheduling.md)."""


ORDERINGS: Mapping[str, Entry[Callable[[], QueueOrder]]] = {
    "fifo": Entry(Fifo, "priority, then submit time"),
    "las": Entry(
        LeastAttainedService,
        "Tiresias 2D-LAS: demoted after 1 and 10 GPU-hours of service; preempts for class",
    ),
    "las-mosu": Entry(
        lambda: LeastAttainedService(name="las-mosu", thresholds_gpu_s=MOSU_LAS_THRESHOLDS_GPU_S),
        "2D-LAS demoted after 2 and 10 GPU-hours (mosu's ordering)",
    ),
    "las-gang": Entry(
        lambda: GangScaledLAS(thresholds_gpu_s=MOSU_LAS_THRESHOLDS_GPU_S),
        "2D-LAS at mosu's thresholds scaled by gang size beyond one 8-GPU node",
    ),
    "sjf-oracle": Entry(ShortestJobOracle, "reference: true remaining time, never preempting"),
    "srtf-oracle": Entry(
        ShortestRemainingOracle, "reference: true remaining time, preempting longer ones"
    ),
    "srtf-gpu-oracle": Entry(
        ShortestRemainingServiceOracle,
        "reference: true remaining GPU-time, preempting jobs with more",
    ),
}
"""Queue orderings by name."""

PLACEMENTS: Mapping[str, Entry[PlacementFactory]] = {
    "random": Entry(lambda ctx: RandomFit(ctx.rng), "any node where the replica fits, at random"),
    "dotprod": Entry(
        lambda ctx: DotProduct(ctx.rng), "FGD paper baseline: dot product of request and free"
    ),
    "clustering": Entry(
        lambda ctx: Clustering(ctx.rng), "FGD paper baseline: nodes running the same kind first"
    ),
    "packing": Entry(
        lambda ctx: Packing(ctx.rng), "FGD paper baseline: partly used GPUs, then used nodes"
    ),
    "bestfit": Entry(
        lambda ctx: BestFitScore(ctx.rng),
        "FGD paper baseline: least CPU and GPU left over, integer scores, random ties",
    ),
    "fgd": Entry(
        lambda ctx: Fgd(ctx.task_mix, ctx.rng),
        "fragmentation gradient descent (Weng et al., ATC'23) over the popular task types",
    ),
    "mosu": Entry(
        lambda ctx: Mosu(ctx.task_mix, ctx.rng),
        "fragmentation weighed by scarce homes, CPU/memory stranding and GPU-type pressure",
    ),
    "tightest": Entry(
        lambda ctx: BestFit(), "the node left with the least free GPU, then the lowest index"
    ),
}
"""Placements by name: the FGD paper's baselines and mosu's (what ``mosu sim fill``
compares by default), then ``tightest``, the plain node choice of the baseline
scheduling profiles."""

FILL_PLACEMENTS = ("random", "dotprod", "clustering", "packing", "bestfit", "fgd", "mosu")
"""The fill experiment's default comparison: the paper's policies and mosu's."""

POLICIES: Mapping[str, PlacementFactory] = {name: e.build for name, e in PLACEMENTS.items()}
"""Placement factories by name (what the fill experiment and its benchmarks iterate)."""

DEFAULT_PLACEMENT = "mosu"


def make_ordering(name: str) -> QueueOrder:
    entry = ORDERINGS.get(name)
    if entry is None:
        raise InvalidInput(
            f"unknown ordering {name!r}; choose one of: {', '.join(ORDERINGS)}", field="ordering"
        )
    return entry.build()


def make_placement(
    name: str,
    context: PolicyContext | None = None,
    registry: Mapping[str, PlacementFactory] = POLICIES,
) -> PlacementPolicy:
    """Build the placement called ``name``; ``InvalidInput`` naming the choices if unknown."""
    factory = registry.get(name)
    if factory is None:
        raise InvalidInput(
            f"unknown placement {name!r}; choose one of: {', '.join(registry)}", field="placement"
        )
    return factory(context or PolicyContext())


__all__ = [
    "DEFAULT_PLACEMENT",
    "FILL_PLACEMENTS",
    "MOSU_LAS_THRESHOLDS_GPU_S",
    "ORDERINGS",
    "PLACEMENTS",
    "POLICIES",
    "Entry",
    "PlacementFactory",
    "PolicyContext",
    "TaskMix",
    "TaskType",
    "make_ordering",
    "make_placement",
]
