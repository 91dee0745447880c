"""Dot product (Tetris-style alignment), as the FGD paper's baseline.

Node free vector ``[cpu, gpu]`` and request vector, each scaled by the largest node
(128 cores, 8 GPUs); the node with the smallest dot product wins (integer scores
``100 * (1 - dot / 2)``, ties drawn at random); the tightest GPU for a share.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from mosu.core.models import Shape
from mosu.engine.placement.base import choose_gpus
from mosu.engine.placement.bestfit import MAX_SPEC_CPU_MILLI, MAX_SPEC_GPU_MILLI
from mosu.engine.placement.common import TieBreak, pick_max
from mosu.engine.state import ClusterState


class DotProduct:
    name = "dotprod"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ties = TieBreak(rng)

    def select(
        self, state: ClusterState, shape: Shape, candidates: Sequence[int]
    ) -> tuple[int, tuple[int, ...]] | None:
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand):
            return None
        c = state.cols
        dot = c.cpu_free[cand] * (shape.cpu_milli / MAX_SPEC_CPU_MILLI**2)
        dot += c.free_total[cand] * (shape.total_gpu_milli / MAX_SPEC_GPU_MILLI**2)
        scores = np.trunc((1.0 - dot / 2) * 100).astype(np.int64)
        i = pick_max(scores, cand, self.ties, len(state.nodes))
        return i, choose_gpus(state, i, shape)
