"""mosu's default placement: fragmentation descent that also sees CPU, memory and scarce GPU types.

FGD (``fgd.py``) scores a node by how much its expected GPU fragmentation grows:
the share of its free GPU that the next arriving task cannot use, averaged over
the task mix. It is one-step and GPU-only. Three things it ignores decide most
of what stays unallocated when a cluster fills up (docs/placement.md has the
measurements):

1. **CPU and memory strand GPUs before any single task stops fitting.** GPU
   tasks bring ``rho_cpu`` GPU per CPU milli and ``rho_mem`` GPU per MiB (their
   total GPU over their total CPU or memory, counting each task type on the GPU
   types it accepts, spread in proportion to their GPU count). A node with free
   GPU ``G``, CPU ``C`` and memory ``M`` can feed at most ``min(C * rho_cpu,
   M * rho_mem)`` GPUs to that mix, however its GPUs are split; so its expected
   stranded GPU is::

       stranded = max(frag, G - min(C * rho_cpu, M * rho_mem))

   with ``frag`` FGD's expected fragmentation. Minimising the growth of
   ``stranded`` keeps CPU-hungry tasks (CPU-only ones above all) off nodes whose
   CPU is already short for their GPUs: a look-ahead over the node's remaining
   life, not only the next task.
2. **Scarce GPU types.** FGD counts a node's free GPU as fragmented for every
   task type that may not run on its GPU type, so it *prefers* to spend the GPU
   types few tasks accept, exactly the ones the constrained tasks need. mosu
   counts only task types that accept the node, and charges taking ``g`` GPU
   milli of type ``k`` an opportunity cost ``g * min(1, pressure_k)``, where
   ``pressure_k`` is the GPU demand expected on type ``k`` over its supply when
   every task type's demand (scaled to one cluster's worth) spreads over the
   types it accepts in proportion to their size. With no constraints every type
   has the same pressure and the cost changes nothing; with constraints, general
   tasks go where the cost is lowest and scarce types stay free for those that
   need them.
3. **Exact comparison, consolidating ties.** The decrease is compared exactly
   (FGD truncates a sigmoid to an integer); ties go to the node with the smallest
   free GPU fraction, then to a fixed random node order, so ties keep filling the
   same nodes.
4. **A fragment only costs where homes run out.** Each task type's weight in the
   fragmentation measure is its share of the mix times ``min(1, arrivals /
   homes)`` (``homes.py``): the replicas of it expected before the GPU it
   accepts is gone, over the replicas of it the cluster could still host.
   Types with homes to spare stop dictating; the ones running out weigh fully.

The task mix is every observed task type weighted by count, CPU-only ones
included (FGD keeps only the types covering 95 % of tasks), then weighed by
scarcity. Built without a mix (as scheduling profiles build it), the policy learns
one from the jobs each cycle sees, pending and running (``RecentMix``: the last
2,000 distinct jobs, re-tabulated as a tenth of them turns over or a new task type
appears), so gangs and whole-GPU jobs place by the live queue's mix.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from mosu.core.models import GPU_MILLI, Job, RunningJob, Shape
from mosu.engine.placement.base import Candidates, PolicyHooks, choose_gpus
from mosu.engine.placement.common import TieBreak
from mosu.engine.placement.frag import FragTable, NodeStateCache, node_key
from mosu.engine.placement.homes import HomesCache, scarcity
from mosu.engine.placement.taskmix import RecentMix, TaskMix
from mosu.engine.state import ClusterState

SCORE_DECIMALS = 6
"""Decreases are compared after rounding to 1e-6 GPU milli, so float noise never decides."""
REWEIGH_STEP = 0.01
"""Task types are reweighed by scarcity each time the cluster's free GPU moves by this
share of its capacity: homes change slowly, and reweighing re-tabulates every state."""


def _alike(sids: np.ndarray, cpu: np.ndarray, mem: np.ndarray) -> bool:
    """Whether nodes with these state ids, free CPU and free memory score alike."""
    return bool(sids.min() == sids.max() and cpu.min() == cpu.max() and mem.min() == mem.max())


@dataclass(frozen=True)
class _Kept:
    """What ``select`` may change in a ``Mosu``: its weights and where they were weighed."""

    mixes: int
    weights: np.ndarray
    weights_key: bytes
    weighed_at: tuple[ClusterState, int] | None


class Mosu(PolicyHooks):
    name = "mosu"

    def __init__(self, task_mix: TaskMix, rng: random.Random) -> None:
        self.rng = rng
        self.ties = TieBreak(rng)
        # Without a mix given up front, the mix is learned from the jobs cycles see.
        self.recent = RecentMix() if not task_mix.total else None
        self._use_mix(task_mix)

    def _use_mix(self, task_mix: TaskMix) -> None:
        self._mixes: int = getattr(self, "_mixes", 0) + 1  # the table's version
        self.table = FragTable(task_mix.by_count(), inaccessible_is_fragment=False)
        # What ``select`` depends on besides the state (``fingerprint``): the table,
        # its weights and where they were weighed.
        self._weights_key = self.table.weights.tobytes()
        self._stale = False
        """``_before`` is to be computed anew for every node (weights restored)."""
        self.cache = NodeStateCache(self.table)
        self._homes = HomesCache(self.table.tasks)
        self.base_weights = self.table.weights.copy()
        self._base_total = float(self.base_weights.sum())
        self._weighed_at: tuple[ClusterState, int] | None = None
        self.gpu_tasks = [(t, n) for t, n in task_mix.counts if t.gpus]
        self.demand = task_mix.by_demand()
        self._for_state: ClusterState | None = None
        self.gpu_per_cpu = self.gpu_per_mem = self.cost = np.zeros(0)
        self._strands_nothing = False
        self._before = np.zeros(0)
        self._all_milli: tuple[ClusterState, int] | None = None

    def learn(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> None:
        if self.recent is not None and self.recent.observe_cycle(pending, running):
            self._use_mix(self.recent.mix())

    def _per_type(self, state: ClusterState) -> None:
        """CPU and memory ratios and opportunity cost per GPU type of ``state``."""
        if self._for_state is state:
            return
        self._for_state = state
        names = state.gpu_types
        supply = np.bincount(state.cols.gpu_type, weights=state.cols.gpus, minlength=len(names))

        def spread(types: tuple[str, ...]) -> np.ndarray:
            """The share of a task type's demand each GPU type gets."""
            accepts = np.array([not types or name in types for name in names], dtype=bool)
            total = supply[accepts].sum()
            return np.where(accepts, supply / total, 0.0) if total else np.zeros(len(names))

        gpu, cpu, mem = (np.zeros(len(names)) for _ in range(3))
        for t, n in self.gpu_tasks:
            share = spread(t.gpu_types) * n
            gpu += share * t.total_gpu_milli
            cpu += share * t.cpu_milli
            mem += share * t.mem_mib
        pressure = np.zeros(len(names))
        for t, w in self.demand:
            with np.errstate(divide="ignore", invalid="ignore"):
                pressure += np.where(supply > 0, spread(t.gpu_types) * w * supply.sum() / supply, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.gpu_per_cpu = np.where(cpu > 0, gpu / cpu, np.inf)
            self.gpu_per_mem = np.where(mem > 0, gpu / mem, np.inf)
        self.cost = np.minimum(1.0, pressure)
        # A mix asking no CPU or memory strands nothing: ``stranded`` is ``frag`` then.
        self._strands_nothing = bool(
            np.isinf(self.gpu_per_cpu).all() and np.isinf(self.gpu_per_mem).all()
        )

    def _gpu_milli(self, state: ClusterState) -> int:
        """The GPU milli of every node of ``state``, schedulable or not."""
        known = self._all_milli
        if known is None or known[0] is not state:
            known = self._all_milli = (state, int(state.cols.gpus.sum()) * GPU_MILLI)
        return known[1]

    def _reweigh(self, state: ClusterState) -> bool:
        """Weigh each task type by the scarcity of its homes (``homes.py``) when the
        cluster's free GPU has moved by ``REWEIGH_STEP`` of its capacity since the
        last time; True when the weights changed."""
        # The free GPU of every node (``cols.free_total`` summed), kept without a pass:
        # all the GPU milli less what ``assign`` and ``release`` count as allocated.
        free = self._gpu_milli(state) - state.allocated_milli
        last = self._weighed_at
        step = max(1.0, REWEIGH_STEP * state.capacity_milli)
        if last is not None and last[0] is state and abs(free - last[1]) < step:
            return False
        self._weighed_at = (state, free)
        t = self.table
        have = self._homes.homes(state)
        t.reweight(self.base_weights * scarcity(state, t.tasks, self.base_weights, have))
        self._weights_key = t.weights.tobytes()
        return True

    def fingerprint(self) -> Hashable | None:
        last = self._weighed_at
        weighed = None if last is None else (id(last[0]), last[1])
        return (self._mixes, self._weights_key, weighed)

    def always_picks(self) -> bool:
        return True

    def keep(self) -> object | None:
        return _Kept(self._mixes, self.table.weights.copy(), self._weights_key, self._weighed_at)

    def restore(self, kept: object) -> None:
        if not isinstance(kept, _Kept) or kept.mixes != self._mixes:
            return  # another table since: nothing to restore (``place_job`` never asks)
        if kept.weights_key != self._weights_key:
            # The table's values are a function of its weights and states alone.
            self.table.reweight(kept.weights)
            self._weights_key = kept.weights_key
            self._stale = True
        self._weighed_at = kept.weighed_at

    def settle(self, state: ClusterState) -> None:
        if self._reweigh(state):
            self._stale = True  # ``select`` recomputes every node with the new weights

    def quiet_for(self, state: ClusterState, taken_milli: int) -> bool:
        # ``select`` changes the policy only by reweighing (``_reweigh``), which it
        # does once the free GPU total is ``REWEIGH_STEP`` away from the last one.
        last = self._weighed_at
        if last is None or last[0] is not state:
            return False
        free = int(state.cols.free_total.sum())
        step = max(1.0, REWEIGH_STEP * state.capacity_milli)
        return abs(free - last[1]) < step and abs(free - taken_milli - last[1]) < step

    def stranded(
        self,
        frag: np.ndarray,
        free: np.ndarray,
        cpu: np.ndarray,
        mem: np.ndarray,
        types: np.ndarray,
    ) -> np.ndarray:
        """Expected GPU milli the mix cannot use on nodes with this fragmentation, free
        GPU, CPU and memory, and GPU type."""
        if self._strands_nothing:
            return frag
        per_cpu, per_mem = self.gpu_per_cpu[types], self.gpu_per_mem[types]
        # A mix that needs no CPU (or memory) is not held back by it, even on a node with
        # none left: that is inf GPU fed, where the product would be 0 x inf = nan.
        with np.errstate(invalid="ignore"):
            by_cpu = np.where(per_cpu == np.inf, np.inf, cpu * per_cpu)
            by_mem = np.where(per_mem == np.inf, np.inf, mem * per_mem)
        return np.maximum(frag, free - np.minimum(by_cpu, by_mem))

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand):
            return None
        all_sids = self._refresh(state)
        c, t = state.cols, self.table
        scale = 1.0 / self._base_total if self._base_total else 0.0
        sids = all_sids[cand]
        cpu, mem = c.cpu_free[cand], c.mem_free[cand]
        if len(cand) > 1 and _alike(sids, cpu, mem):
            # Candidates alike in every term of the score (a node's state id fixes its
            # GPU type and free shares) score alike: the fixed order picks.
            tied = cand
        else:
            types = c.gpu_type[cand]
            free = c.free_total[cand]
            before = self._before[cand]
            cpu_after, mem_after = cpu - shape.cpu_milli, mem - shape.mem_mib
            frag_after = t.best_frag_after(sids, shape.gpus, shape.gpu_milli, cpu_after) * scale
            after = self.stranded(
                frag_after, free - shape.total_gpu_milli, cpu_after, mem_after, types
            )
            gain = before - after - shape.total_gpu_milli * self.cost[types]
            gain = np.round(gain, SCORE_DECIMALS)
            best = np.flatnonzero(gain == gain.max())
            if len(best) > 1:
                fraction = c.free_total[cand[best]] / np.maximum(c.gpus[cand[best]], 1)
                best = best[fraction == fraction.min()]
            tied = cand[best]
        if len(tied) == 1:
            i = int(tied[0])
        else:
            i = int(tied[np.argmin(self.ties.rank(len(state.nodes))[tied])])
        if shape.fractional:
            return i, (self._share_gpu(state, i, shape),)
        return i, choose_gpus(state, i, shape)

    def _refresh(self, state: ClusterState) -> np.ndarray:
        """What every ``select`` call does before it scores: reweigh if due, bring each
        changed node's stranded GPU (``_before``) up to date; every node's state id."""
        self._per_type(state)
        c, t = state.cols, self.table
        all_sids = self.cache.sids(state)
        # Fragmentation stays in GPU milli per task of the (unweighted) mix.
        scale = 1.0 / self._base_total if self._base_total else 0.0
        if len(self._before) != len(all_sids):
            self._before = np.zeros(len(all_sids))
        changed = self.cache.changed
        if self._reweigh(state) or self._stale:
            self._stale = False
            changed = np.arange(len(all_sids))
        if len(changed):
            # A node's stranded GPU changes only when the node does.
            cpu, mem = c.cpu_free[changed], c.mem_free[changed]
            frag = t.frag(all_sids[changed], cpu) * scale
            free, types = c.free_total[changed], c.gpu_type[changed]
            self._before[changed] = self.stranded(frag, free, cpu, mem, types)
        return all_sids

    def alike(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> Sequence[int] | None:
        # Whole GPUs only: a replica then takes ``shape.gpus`` of its node's fully free
        # GPUs, and the node stays a candidate only with room for another.
        if not shape.gpus or shape.fractional or not len(candidates):
            return None
        cand = np.asarray(candidates, dtype=np.int64)
        all_sids = self._refresh(state)
        c = state.cols
        cpu, mem = c.cpu_free[cand], c.mem_free[cand]
        if not _alike(all_sids[cand], cpu, mem):
            return None
        first = int(cand[0])
        if (
            c.full_free[first] >= 2 * shape.gpus
            and cpu[0] >= 2 * shape.cpu_milli
            and mem[0] >= 2 * shape.mem_mib
        ):
            return None  # a taken node stays a candidate, unlike the others
        # Each call takes the best-ranked of the rest; the others are untouched, so
        # still alike, and the taken node is no candidate any more.
        return cand[np.argsort(self.ties.rank(len(state.nodes))[cand], kind="stable")].tolist()

    def select_known(self, state: ClusterState, shape: Shape, i: int) -> tuple[int, ...]:
        # ``select``'s changes to the policy come from ``_reweigh`` alone; the nodes
        # changed meanwhile are brought up to date by the next ``_refresh``.
        if self._reweigh(state):
            self._stale = True
        return choose_gpus(state, i, shape)

    def _share_gpu(self, state: ClusterState, i: int, shape: Shape) -> int:
        """The GPU whose use leaves the least fragmentation; the tightest, then the
        lowest index, on ties (CPU, memory and type terms are equal across a node's GPUs)."""
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
