"""Dot product (Tetris-style alignment), as the FGD paper's baseline.

Node free vector ``[cpu, gpu]`` and request vector, each scaled by the largest node
(128 cores, 8 GPUs); the node with the smallest dot product wins (integer scores
``100 * (1 - dot / 2)``, ties drawn at random); the tightest GPU for a share.
"""

from __future__ import annotations

import numpy as np

from mosu.core.models import Shape
from mosu.engine.placement.bestfit import MAX_SPEC_CPU_MILLI, MAX_SPEC_GPU_MILLI
from mosu.engine.placement.common import ScoringPolicy
from mosu.engine.state import ClusterState


class DotProduct(ScoringPolicy):
    name = "dotprod"

    def scores(self, state: ClusterState, shape: Shape, cand: np.ndarray) -> np.ndarray:
        c = state.cols
        dot = c.cpu_free[cand] * (shape.cpu_milli / MAX_SPEC_CPU_MILLI**2)
        dot += c.free_total[cand] * (shape.total_gpu_milli / MAX_SPEC_GPU_MILLI**2)
        return np.trunc((1.0 - dot / 2) * 100).astype(np.int64)
