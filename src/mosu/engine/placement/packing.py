"""GPU packing, as the FGD paper's baseline: prefer a partly used GPU (the fuller the
better), then fully free GPUs on a node already in use (the fewer the better), and
only then an idle node. CPU-only tasks score
the same everywhere, so they go to the first node in the tie order."""

from __future__ import annotations

import numpy as np

from mosu.core.models import GPU_MILLI, Shape
from mosu.engine.placement.common import ScoringPolicy
from mosu.engine.state import ClusterState


class Packing(ScoringPolicy):
    name = "packing"

    def scores(self, state: ClusterState, shape: Shape, cand: np.ndarray) -> np.ndarray:
        if shape.gpus == 0:
            return np.zeros(len(cand), dtype=np.int64)
        c = state.cols
        full = c.full_free[cand]
        idle = np.maximum(33 - full, full)
        if shape.gpu_milli == GPU_MILLI:
            used = np.full(len(cand), max(50 - shape.gpus, 33))
        else:
            free = c.gpu_free[cand]
            tightest = np.where(free >= shape.gpu_milli, free, GPU_MILLI + 1).min(axis=1)
            shared = np.maximum(100 - (tightest * 100 // GPU_MILLI) // 10, 50)
            used = np.where(tightest >= GPU_MILLI, max(50 - 1, 33), shared)
        return np.where(full == c.gpus[cand], idle, used)
