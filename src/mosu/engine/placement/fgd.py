"""Fragmentation gradient descent (Weng et al., USENIX ATC'23), as the paper runs it.

The task mix is the most frequent task types covering 95 % of the observed tasks,
weighted by count (the paper's "target workload"). For each candidate node the
score is ``int(100 * sigmoid((frag_before - frag_after) / 1000))`` where frag is
``frag.FragTable``'s expected fragmentation in GPU milli; the highest score wins
and ties are drawn at random, as in the Kubernetes scheduler. A share goes on the
GPU (lowest index first) whose use scores best; whole GPUs are the lowest-index
free ones.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import numpy as np

from mosu.core.models import Job, RunningJob, Shape
from mosu.engine.placement.base import Candidates, PolicyHooks, choose_gpus
from mosu.engine.placement.common import TieBreak, pick_max
from mosu.engine.placement.frag import FragTable, NodeStateCache, node_key
from mosu.engine.placement.taskmix import RecentMix, TaskMix
from mosu.engine.state import ClusterState

POPULAR_COVERAGE = 0.95
"""Share of tasks the paper's target workload covers (its ``podPopularityThreshold``)."""


def fgd_score(delta: np.ndarray) -> np.ndarray:
    """The paper's integer score of a fragmentation decrease ``delta`` (GPU milli)."""
    return np.trunc(100.0 / (1.0 + np.exp(-delta / 1000.0))).astype(np.int64)


class Fgd(PolicyHooks):
    name = "fgd"

    def __init__(self, task_mix: TaskMix, rng: random.Random) -> None:
        self.rng = rng
        self.ties = TieBreak(rng)
        # Without a mix given up front, the mix is learned from the jobs cycles see.
        self.recent = RecentMix() if not task_mix.total else None
        self._use_mix(task_mix)

    def _use_mix(self, task_mix: TaskMix) -> None:
        self._mixes: int = getattr(self, "_mixes", 0) + 1  # the table's version
        self.table = FragTable(task_mix.popular(POPULAR_COVERAGE))
        self.cache = NodeStateCache(self.table)
        self._before = np.zeros(0)

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        if self.recent is not None and self.recent.observe_cycle(pending, running):
            self._use_mix(self.recent.mix())

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        return True  # ``select`` only caches what the state and table determine

    def fingerprint(self) -> Hashable | None:
        return self._mixes

    def always_picks(self) -> bool:
        return True

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand):
            return None
        all_sids = self.cache.sids(state)
        if len(self._before) != len(all_sids):
            self._before = np.zeros(len(all_sids))
        changed = self.cache.changed
        if len(changed):
            # A node's fragmentation changes only when the node does.
            self._before[changed] = self.table.frag(all_sids[changed], state.cols.cpu_free[changed])
        sids = all_sids[cand]
        cpu = state.cols.cpu_free[cand]
        before = self._before[cand]
        after = self.table.best_frag_after(sids, shape.gpus, shape.gpu_milli, cpu - shape.cpu_milli)
        i = pick_max(fgd_score(before - after), cand, self.ties, len(state.nodes))
        if shape.fractional:
            return i, (self._share_gpu(state, i, shape),)
        return i, choose_gpus(state, i, shape)

    def _share_gpu(self, state: ClusterState, i: int, shape: Shape) -> int:
        """The paper's GPU choice for a share: the lowest-index GPU with the best score."""
        gpu_type, frees = node_key(state, i)
        free = state.gpu_free[i]
        gpus = [g for g, f in enumerate(free) if f >= shape.gpu_milli]
        sids = [self.table.state_id((gpu_type, frees))]
        for g in gpus:
            rest = list(free)
            rest[g] -= shape.gpu_milli
            sids.append(self.table.state_id((gpu_type, tuple(sorted(rest, reverse=True)))))
        cpu = np.array([state.cpu_free[i]] + [state.cpu_free[i] - shape.cpu_milli] * len(gpus))
        frag = self.table.frag(np.array(sids), cpu)
        scores = fgd_score(frag[0] - frag[1:])
        return gpus[int(np.argmax(scores))]
