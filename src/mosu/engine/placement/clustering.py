"""GPU clustering, as the FGD paper's baseline: put a task with replicas of the same
kind (shared GPU, 1 GPU, 2 GPUs ...), best of all on a node holding only that kind,
then on an empty node, then anywhere; within a band, the fuller node. CPU-only
tasks score the same everywhere, so they go to the first node in the tie order."""

from __future__ import annotations

import numpy as np

from mosu.core.models import Shape
from mosu.engine.placement.bestfit import MAX_SPEC_GPU_MILLI
from mosu.engine.placement.common import ScoringPolicy
from mosu.engine.state import ClusterState


class Clustering(ScoringPolicy):
    name = "clustering"

    def scores(self, state: ClusterState, shape: Shape, cand: np.ndarray) -> np.ndarray:
        if shape.gpus == 0:
            return np.zeros(len(cand), dtype=np.int64)
        c = state.cols
        gpu_cols = [col for (n, _), col in c.tag_index.items() if n > 0]
        # numpy's stubs want arrays; a list of column numbers indexes the same.
        held = (
            c.tags[np.ix_(cand, gpu_cols)] > 0  # type: ignore[arg-type]
            if gpu_cols
            else np.zeros((len(cand), 0), bool)
        )
        kinds = held.sum(axis=1)
        col = c.tag_index.get((shape.gpus, shape.fractional))
        same = c.tags[cand, col] > 0 if col is not None else np.zeros(len(cand), bool)
        band = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        fullness = 25 * (MAX_SPEC_GPU_MILLI - c.free_total[cand]) // MAX_SPEC_GPU_MILLI
        return band + fullness
