"""Best fit.

``BestFit`` is the engine's simple default: the node left with the least free GPU,
then the lowest index. ``BestFitScore`` is the FGD paper's best-fit baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mosu.core.models import Shape
from mosu.engine.placement.base import Candidates, StateOnly, choose_gpus
from mosu.engine.placement.common import ScoringPolicy
from mosu.engine.state import ClusterState


class BestFit(StateOnly):
    """The node left with the least free GPU, then the lowest index."""

    name = "tightest"

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        best = min(candidates, key=lambda i: (state.free_gpu_milli(i), i), default=None)
        if best is None:
            return None
        return int(best), choose_gpus(state, int(best), shape)

    def reserve_node(
        self, state: ClusterState, candidates: Sequence[int], gpu_free: Mapping[int, Sequence[int]]
    ) -> int | None:
        # ``select``'s choice read from the given shares (candidates are schedulable).
        return min(candidates, key=lambda i: (sum(gpu_free[i]), i), default=None)


MAX_SPEC_CPU_MILLI = 128_000
"""The largest node's CPU in the FGD paper's simulator, used to put CPU on a 0..1 scale."""
MAX_SPEC_GPU_MILLI = 8_000
"""The largest node's GPU (8 GPUs) in the FGD paper's simulator."""


def normalize_scores(raw: np.ndarray) -> np.ndarray:
    """Integer rescale of scores to 0..100, as the Kubernetes score extension does
    (all equal -> all 0); the integer steps create ties that are then drawn at random."""
    lo, hi = int(raw.min()), int(raw.max())
    if hi == lo:
        return np.zeros_like(raw)
    return (raw - lo) * 100 // (hi - lo)


class BestFitScore(ScoringPolicy):
    """Best fit over CPU and GPU, as the FGD paper's baseline: minimise the node's
    leftover ``0.5 * cpu/128 cores + 0.5 * gpu/8 GPUs`` after placing, scores as
    integers 0..100, ties drawn at random; the tightest GPU for a share."""

    name = "bestfit"

    def scores(self, state: ClusterState, shape: Shape, cand: np.ndarray) -> np.ndarray:
        c = state.cols
        leftover = (c.cpu_free[cand] - shape.cpu_milli) / MAX_SPEC_CPU_MILLI * 0.5
        leftover += (c.free_total[cand] - shape.total_gpu_milli) / MAX_SPEC_GPU_MILLI * 0.5
        raw = np.trunc((1.0 - leftover) * 100).astype(np.int64)
        return normalize_scores(raw)
