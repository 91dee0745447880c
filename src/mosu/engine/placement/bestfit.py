"""Best fit: the node left with the least free GPU after placing, then the lowest index."""

from __future__ import annotations

from collections.abc import Sequence

from mosu.core.models import Shape
from mosu.engine.placement.base import choose_gpus
from mosu.engine.state import ClusterState


class BestFit:
    name = "bestfit"

    def select(
        self, state: ClusterState, shape: Shape, candidates: Sequence[int]
    ) -> tuple[int, tuple[int, ...]] | None:
        best = min(candidates, key=lambda i: (state.free_gpu_milli(i), i), default=None)
        if best is None:
            return None
        return best, choose_gpus(state, best, shape)
