"""mosu's default placement: fragmentation descent over every resource that can strand a GPU.

FGD (``fgd.py``) measures how much of a node's free GPU the arriving task mix
cannot use, one task at a time, and only on the GPU axis (CPU counts only when
one task alone does not fit). Three things it ignores decide most of what stays
unallocated when a cluster fills up (see docs/placement.md):

1. **CPU and memory run out before GPUs do.** A node whose free CPU (or memory)
   can feed fewer GPUs than it has free will strand the rest, even though every
   single task type still fits now. The arriving mix needs ``rho_cpu`` GPU per
   CPU milli and ``rho_mem`` GPU per MiB on aggregate (its total GPU over its total
   CPU or memory, CPU-only tasks included, since they eat CPU too). A node with
   free GPU ``G``, CPU ``C`` and memory ``M`` can therefore feed at most
   ``min(G - frag, C * rho_cpu, M * rho_mem)`` GPUs to the mix; the rest is its
   expected stranded GPU::

       stranded = max(frag, G - C * rho_cpu, G - M * rho_mem)

   where ``frag`` is FGD's expected GPU fragmentation. Minimising the increase of
   ``stranded`` keeps CPU-heavy tasks off CPU-poor nodes and packs GPU-heavy ones
   where CPU is plentiful, a look-ahead over the node's remaining life rather
   than over the next task only.
2. **What matters is GPU demand, not task count.** The mix is weighted by each
   type's share of requested GPU (count x GPUs x share), over every type (no
   popularity cut-off): an 8-GPU task is rare by count but a large slice of the
   GPUs to be placed, and FGD's count weighting all but ignores the whole free
   nodes it needs.
3. **Exact scores, consolidating ties.** The decrease is compared exactly (FGD
   truncates a sigmoid to an integer, making near-equal nodes tie at random);
   remaining ties go to the node left with the least free GPU, then to a fixed
   random node order.

GPU-type scarcity needs no extra term: task types that accept only some GPU types
are in the mix with their demand, so a node many of them cannot use counts its
free GPU as fragmented for them, and general tasks are steered there first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from mosu.core.models import Shape
from mosu.engine.placement.base import choose_gpus
from mosu.engine.placement.common import TieBreak
from mosu.engine.placement.frag import FragTable, NodeStateCache, node_key
from mosu.engine.placement.taskmix import TaskMix
from mosu.engine.state import ClusterState

SCORE_DECIMALS = 6
"""Decreases are compared after rounding to 1e-6 GPU milli, so float noise never decides."""


class Mosu:
    name = "mosu"

    def __init__(self, task_mix: TaskMix, rng: random.Random) -> None:
        self.rng = rng
        self.ties = TieBreak(rng)
        import os

        v = os.environ.get("MOSU_VARIANT", "demand,strand")
        self.strand = "strand" in v
        self.v = v
        mix = (
            task_mix.by_demand() if "demand" in v else task_mix.popular(0.95 if "pop" in v else 1.0)
        )
        self.table = FragTable(mix)
        self.cache = NodeStateCache(self.table)
        self.users = [(t, n) for t, n in task_mix.counts if t.gpus]
        self._ratio_state: ClusterState | None = None

    def _ratios(self, state: ClusterState) -> None:
        """GPU per CPU milli and per MiB that the mix brings to each GPU type.

        Each GPU task type is spread over the GPU types it accepts in proportion to
        their GPU count; a GPU type's ratio is then the GPU over the CPU (memory) of
        what lands on it."""
        if self._ratio_state is state:
            return
        self._ratio_state = state
        ntypes = len(state.gpu_types)
        supply = np.bincount(state.cols.gpu_type, weights=state.cols.gpus, minlength=ntypes)
        gpu, cpu, mem = (np.zeros(ntypes) for _ in range(3))
        for t, n in self.users:
            accepts = np.zeros(ntypes, dtype=bool)
            for k, name in enumerate(state.gpu_types):
                accepts[k] = not t.gpu_types or name in t.gpu_types
            total = supply[accepts].sum()
            if not total:
                continue
            share = np.where(accepts, supply / total, 0.0) * n
            gpu += share * t.total_gpu_milli
            cpu += share * t.cpu_milli
            mem += share * t.mem_mib
        if "globalrho" in self.v:
            gpu[:], cpu[:], mem[:] = gpu.sum(), cpu.sum(), mem.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            self.gpu_per_cpu = np.where(cpu > 0, gpu / cpu, np.inf)
            self.gpu_per_mem = np.where(mem > 0, gpu / mem, np.inf)

    def stranded(
        self,
        frag: np.ndarray,
        free: np.ndarray,
        cpu: np.ndarray,
        mem: np.ndarray,
        types: np.ndarray,
    ) -> np.ndarray:
        """Expected GPU milli the mix cannot use on nodes with this fragmentation and
        free GPU, CPU and memory."""
        if not self.strand:
            return frag
        fed = np.minimum(cpu * self.gpu_per_cpu[types], mem * self.gpu_per_mem[types])
        return np.maximum(frag, free - fed)

    def select(
        self, state: ClusterState, shape: Shape, candidates: Sequence[int]
    ) -> tuple[int, tuple[int, ...]] | None:
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand):
            return None
        c = state.cols
        t = self.table
        sids = self.cache.sids(state)[cand]
        cpu, mem, free = c.cpu_free[cand], c.mem_free[cand], c.free_total[cand]
        scale = 1.0 / t.total_weight if t.total_weight else 0.0
        self._ratios(state)
        types = c.gpu_type[cand]
        before = self.stranded(t.frag(sids, cpu) * scale, free, cpu, mem, types)
        cpu_after, mem_after = cpu - shape.cpu_milli, mem - shape.mem_mib
        frag_after = t.best_frag_after(sids, shape.gpus, shape.gpu_milli, cpu_after) * scale
        after = self.stranded(frag_after, free - shape.total_gpu_milli, cpu_after, mem_after, types)
        gain = np.round(before - after, SCORE_DECIMALS)
        if "quant" in self.v:
            gain = np.trunc(100.0 / (1.0 + np.exp(-gain / 1000.0)))
        best = np.flatnonzero(gain == gain.max())
        if len(best) > 1 and "notie" not in self.v:
            left = c.free_total[cand[best]]
            best = best[left == left.min()]
        tied = cand[best]
        i = int(tied[np.argmin(self.ties.rank(len(state.nodes))[tied])])
        if shape.fractional:
            return i, (self._share_gpu(state, i, shape),)
        return i, choose_gpus(state, i, shape)

    def _share_gpu(self, state: ClusterState, i: int, shape: Shape) -> int:
        """The GPU whose use leaves the least stranded; the tightest, then lowest index, on ties."""
        gpu_type, _ = node_key(state, i)
        free = state.gpu_free[i]
        gpus = [g for g, f in enumerate(free) if f >= shape.gpu_milli]
        sids = []
        for g in gpus:
            rest = list(free)
            rest[g] -= shape.gpu_milli
            sids.append(self.table.state_id((gpu_type, tuple(sorted(rest, reverse=True)))))
        n = len(gpus)
        after = self.table.frag(np.array(sids), np.full(n, state.cpu_free[i] - shape.cpu_milli))
        after = np.round(after, SCORE_DECIMALS)
        return min(zip(after.tolist(), (free[g] for g in gpus), gpus, strict=True))[2]
