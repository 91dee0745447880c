"""Expected GPU fragmentation of a node under a task mix (Weng et al., ATC'23).

For one task type ``t`` (weight ``p_t``) a node's free GPU share counts as
fragmented when ``t`` cannot use it: all of it if ``t`` does not fit the node at
all (too few GPUs with room, too little CPU, a GPU type ``t`` does not accept, or
``t`` asks no GPU), otherwise the GPUs whose free share is below ``t``'s per-GPU
request. The node's fragmentation is the weighted sum over the mix, in GPU milli.

Computing that for every candidate node and every task type on every decision
is O(nodes x types). Two facts make it cheap:

- the GPU part depends only on the node's GPU type and its multiset of free
  shares, so each distinct *GPU state* is interned once (``state_id``) and its
  per-type usable share tabulated once;
- the CPU part is monotone: with task types sorted by CPU request, the types
  that fit a node's free CPU are a prefix. A prefix sum over the tabulated
  usable shares turns "fragmentation at this free CPU" into one lookup.

So ``frag(sids, cpu)`` is two numpy gathers, and ``NodeStateCache`` re-interns
only the nodes whose ``ClusterState.cols.node_version`` moved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mosu.core.models import GPU_MILLI
from mosu.engine.placement.taskmix import TaskType
from mosu.engine.state import ClusterState

GpuKey = tuple[str, tuple[int, ...]]
"""(GPU type, free share of each GPU sorted high to low)."""


class FragTable:
    """Interned GPU states and their fragmentation under one weighted task mix."""

    def __init__(self, mix: Sequence[tuple[TaskType, float]]) -> None:
        ordered = sorted(mix, key=lambda tw: (tw[0].cpu_milli, tw[0]))
        self.tasks: tuple[TaskType, ...] = tuple(t for t, _ in ordered)
        self.weights = np.array([w for _, w in ordered], dtype=np.float64)
        self.cpu_steps = np.array([t.cpu_milli for t in self.tasks], dtype=np.int64)
        self.total_weight = float(self.weights.sum())
        self._ids: dict[GpuKey, int] = {}
        self._keys: list[GpuKey] = []
        self._free = np.zeros(16, dtype=np.float64)
        self._usable = np.zeros((16, len(self.tasks) + 1), dtype=np.float64)
        self._after_whole: dict[tuple[int, int], int] = {}
        self._after_share: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}

    # -- interning -------------------------------------------------------------

    def state_id(self, key: GpuKey) -> int:
        sid = self._ids.get(key)
        if sid is None:
            sid = self._add(key)
        return sid

    def key(self, sid: int) -> GpuKey:
        return self._keys[sid]

    def _add(self, key: GpuKey) -> int:
        gpu_type, frees = key
        sid = len(self._keys)
        if sid == len(self._free):
            self._free = np.concatenate([self._free, np.zeros_like(self._free)])
            self._usable = np.concatenate([self._usable, np.zeros_like(self._usable)])
        total = sum(frees)
        usable = np.zeros(len(self.tasks), dtype=np.float64)
        for k, t in enumerate(self.tasks):
            if t.gpus == 0 or (t.gpu_types and gpu_type not in t.gpu_types):
                continue
            if sum(1 for f in frees if f >= t.gpu_milli) < t.gpus:
                continue
            usable[k] = total - sum(f for f in frees if f < t.gpu_milli)
        self._free[sid] = total
        self._usable[sid, 1:] = np.cumsum(usable * self.weights)
        self._ids[key] = sid
        self._keys.append(key)
        return sid

    # -- queries ---------------------------------------------------------------

    def free(self, sids: np.ndarray) -> np.ndarray:
        return self._free[sids]

    def frag(self, sids: np.ndarray, cpu_free: np.ndarray) -> np.ndarray:
        """Expected fragmented GPU milli of nodes in GPU states ``sids`` with ``cpu_free``."""
        level = np.searchsorted(self.cpu_steps, cpu_free, side="right")
        return self._free[sids] * self.total_weight - self._usable[sids, level]

    def after_whole(self, sid: int, gpus: int) -> int:
        """The GPU state after taking ``gpus`` fully free GPUs (0: unchanged)."""
        memo = (sid, gpus)
        out = self._after_whole.get(memo)
        if out is None:
            gpu_type, frees = self._keys[sid]
            rest = sorted(frees[gpus:] + (0,) * gpus, reverse=True)
            out = self.state_id((gpu_type, tuple(rest)))
            self._after_whole[memo] = out
        return out

    def after_share(self, sid: int, milli: int) -> tuple[tuple[int, int], ...]:
        """Each distinct way to take ``milli`` from one GPU: (new state, free share used)."""
        memo = (sid, milli)
        out = self._after_share.get(memo)
        if out is None:
            gpu_type, frees = self._keys[sid]
            options = []
            for v in sorted({f for f in frees if f >= milli}):
                rest = list(frees)
                rest[rest.index(v)] = v - milli
                options.append((self.state_id((gpu_type, tuple(sorted(rest, reverse=True)))), v))
            out = tuple(options)
            self._after_share[memo] = out
        return out

    def after_many(self, sids: np.ndarray, gpus: int, milli: int) -> np.ndarray:
        """States after placing one replica, per node: shape (n, options), -1 padded.

        A whole-GPU or CPU-only replica has one outcome; a share has one per
        distinct free share it could go on."""
        uniq, inverse = np.unique(sids, return_inverse=True)
        if gpus == 0 or milli >= GPU_MILLI:
            after = np.array([self.after_whole(int(s), gpus) for s in uniq], dtype=np.int64)
            return after[inverse][:, None]
        options = [self.after_share(int(s), milli) for s in uniq]
        width = max(len(o) for o in options)
        table = np.full((len(uniq), width), -1, dtype=np.int64)
        for r, opts in enumerate(options):
            table[r, : len(opts)] = [s for s, _ in opts]
        return table[inverse]


def node_key(state: ClusterState, i: int) -> GpuKey:
    return state.nodes[i].gpu_type, tuple(sorted(state.gpu_free[i], reverse=True))


class NodeStateCache:
    """The interned GPU state of every node of one ``ClusterState``, refreshed lazily."""

    def __init__(self, table: FragTable) -> None:
        self.table = table
        self._state: ClusterState | None = None
        self._seen = np.zeros(0, dtype=np.int64)
        self._sids = np.zeros(0, dtype=np.int64)

    def sids(self, state: ClusterState) -> np.ndarray:
        versions = state.cols.node_version
        if self._state is not state:
            self._state = state
            self._seen = versions.copy()
            self._sids = np.array(
                [self.table.state_id(node_key(state, i)) for i in range(len(state.nodes))],
                dtype=np.int64,
            )
            return self._sids
        changed = np.flatnonzero(versions != self._seen)
        for i in changed.tolist():
            self._sids[i] = self.table.state_id(node_key(state, i))
        self._seen[changed] = versions[changed]
        return self._sids
