"""Random: any node where the replica fits, drawn uniformly; a random GPU for a share."""

from __future__ import annotations

import random

from mosu.core.models import Shape
from mosu.engine.placement.base import Candidates, PolicyHooks
from mosu.engine.placement.common import random_gpus
from mosu.engine.state import ClusterState


class RandomFit(PolicyHooks):
    name = "random"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        if not len(candidates):
            return None
        i = int(candidates[self.rng.randrange(len(candidates))])
        return i, random_gpus(state, i, shape, self.rng)

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        return False  # every ``select`` draws from the generator

    def always_picks(self) -> bool:
        return True
