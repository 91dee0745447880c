"""Placement policies by name: an explicit dict of factories, nothing registered on import.

A factory takes a :class:`PolicyContext` (the task mix expected to arrive and a
seeded ``random.Random``) and returns a :class:`PlacementPolicy`. Policies that do
not need the task mix ignore it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mosu.core.errors import InvalidInput
from mosu.engine.placement.base import PlacementPolicy
from mosu.engine.placement.taskmix import TaskMix, TaskType


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may know when it is built."""

    task_mix: TaskMix = field(default_factory=TaskMix)
    rng: random.Random = field(default_factory=lambda: random.Random(0))


PolicyFactory = Callable[[PolicyContext], PlacementPolicy]


def _registry() -> dict[str, PolicyFactory]:
    from mosu.engine.placement.bestfit import BestFitScore
    from mosu.engine.placement.clustering import Clustering
    from mosu.engine.placement.dotprod import DotProduct
    from mosu.engine.placement.fgd import Fgd
    from mosu.engine.placement.mosu import Mosu
    from mosu.engine.placement.packing import Packing
    from mosu.engine.placement.randomfit import RandomFit

    return {
        "random": lambda ctx: RandomFit(ctx.rng),
        "dotprod": lambda ctx: DotProduct(ctx.rng),
        "clustering": lambda ctx: Clustering(ctx.rng),
        "packing": lambda ctx: Packing(ctx.rng),
        "bestfit": lambda ctx: BestFitScore(ctx.rng),
        "fgd": lambda ctx: Fgd(ctx.task_mix, ctx.rng),
        "mosu": lambda ctx: Mosu(ctx.task_mix, ctx.rng),
    }


POLICIES: Mapping[str, PolicyFactory] = _registry()
"""Every placement policy mosu ships, by the name configs and the CLI use."""

DEFAULT_POLICY = "mosu"


def make_policy(
    name: str, context: PolicyContext, registry: Mapping[str, PolicyFactory] = POLICIES
) -> PlacementPolicy:
    """Build the policy called ``name`` from ``registry``."""
    factory = registry.get(name)
    if factory is None:
        raise InvalidInput(f"unknown placement policy {name!r}; known: {', '.join(registry)}")
    return factory(context)


__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "PolicyContext",
    "PolicyFactory",
    "TaskMix",
    "TaskType",
    "make_policy",
]
