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

Each state also keeps its unweighted usable share per task type, so
``reweight`` can re-tabulate the whole table for new weights in one pass (mosu
weighs task types by how scarce their homes are; fgd never reweighs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mosu.core.models import GPU_MILLI
from mosu.engine.placement.taskmix import TaskType
from mosu.engine.state import ClusterState

_UNKNOWN = -2
GpuKey = tuple[str, tuple[int, ...]]
"""(GPU type, free share of each GPU sorted high to low)."""


class FragTable:
    """Interned GPU states and their fragmentation under one weighted task mix."""

    def __init__(
        self, mix: Sequence[tuple[TaskType, float]], inaccessible_is_fragment: bool = True
    ) -> None:
        self.inaccessible_is_fragment = inaccessible_is_fragment
        ordered = sorted(mix, key=lambda tw: (tw[0].cpu_milli, tw[0]))
        self.tasks: tuple[TaskType, ...] = tuple(t for t, _ in ordered)
        self.weights = np.array([w for _, w in ordered], dtype=np.float64)
        self.cpu_steps = np.array([t.cpu_milli for t in self.tasks], dtype=np.int64)
        self.total_weight = float(self.weights.sum())
        self._task_milli = np.array([t.gpu_milli for t in self.tasks], dtype=np.int64)[:, None]
        self._task_gpus = np.array([t.gpus for t in self.tasks], dtype=np.int64)
        self._type_ok: dict[str, np.ndarray] = {}
        self._trans: dict[tuple[int, int], np.ndarray] = {}
        self._ids: dict[GpuKey, int] = {}
        self._keys: list[GpuKey] = []
        self._free = np.zeros(16, dtype=np.float64)
        self._usable = np.zeros((16, len(self.tasks) + 1), dtype=np.float64)
        self._raw = np.zeros((16, len(self.tasks)), dtype=np.float64)
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
            self._raw = np.concatenate([self._raw, np.zeros_like(self._raw)])
        free = np.array(frees, dtype=np.int64)[None, :]
        total = int(free.sum())
        room = free >= self._task_milli
        accepts = self._accepts(gpu_type)
        fits = accepts & (room.sum(axis=1) >= self._task_gpus)
        usable = np.where(fits, total - np.where(room, 0, free).sum(axis=1), 0)
        if not self.inaccessible_is_fragment:
            # A task that may never run on this GPU type loses nothing here.
            usable = np.where(accepts | (self._task_gpus == 0), usable, total)
        self._free[sid] = total
        self._raw[sid] = usable
        self._usable[sid, 1:] = np.cumsum(usable * self.weights)
        self._ids[key] = sid
        self._keys.append(key)
        return sid

    def _accepts(self, gpu_type: str) -> np.ndarray:
        """Which task types may run on ``gpu_type`` at all (a CPU-only type never uses a GPU)."""
        ok = self._type_ok.get(gpu_type)
        if ok is None:
            ok = np.array(
                [t.gpus > 0 and (not t.gpu_types or gpu_type in t.gpu_types) for t in self.tasks],
                dtype=bool,
            )
            self._type_ok[gpu_type] = ok
        return ok

    def reweight(self, weights: np.ndarray) -> None:
        """Weigh the task types (in ``tasks`` order) anew, for every state interned so far
        and to come; one pass over the table."""
        self.weights = np.asarray(weights, dtype=np.float64)
        self.total_weight = float(self.weights.sum())
        n = len(self._keys)
        np.cumsum(self._raw[:n] * self.weights, axis=1, out=self._usable[:n, 1:])

    # -- queries ---------------------------------------------------------------

    def free(self, sids: np.ndarray) -> np.ndarray:
        return self._free[sids]

    def frag(self, sids: np.ndarray, cpu_free: np.ndarray) -> np.ndarray:
        """Expected fragmented GPU milli of nodes in GPU states ``sids`` with ``cpu_free``
        (``sids`` may be 2-D, one row per node, with ``cpu_free`` one value per row)."""
        level = np.searchsorted(self.cpu_steps, cpu_free, side="right")
        if sids.ndim == 2:
            level = level[:, None]
        flat = sids * self._usable.shape[1] + level
        return self._free[sids] * self.total_weight - self._usable.ravel().take(flat)

    def best_frag_after(
        self, sids: np.ndarray, gpus: int, milli: int, cpu_after: np.ndarray
    ) -> np.ndarray:
        """Per node, the least fragmentation reachable by placing one replica on it."""
        options = self.after_many(sids, gpus, milli)
        if options.shape[1] == 1:
            return self.frag(options[:, 0], cpu_after)
        valid = options >= 0
        frag = self.frag(np.where(valid, options, 0), cpu_after)
        return np.where(valid, frag, np.inf).min(axis=1)

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
        distinct free share it could go on. Outcomes are memoised per state in a
        table per request kind, so a decision is one gather."""
        share = gpus > 0 and milli < GPU_MILLI
        kind = (gpus, milli if share else GPU_MILLI)
        table = self._trans_table(kind, share)
        rows = table[sids]
        unknown = rows[:, 0] == _UNKNOWN
        if unknown.any():
            for s in np.unique(sids[unknown]).tolist():
                if share:
                    out = [sid for sid, _ in self.after_share(s, milli)] or [-1]
                else:
                    out = [self.after_whole(s, gpus)]
                table = self._trans_table(kind, share, len(out))
                table[s, :] = -1
                table[s, : len(out)] = out
            rows = table[sids]
        if rows.shape[1] > 1:
            rows = rows[:, : int((rows >= 0).sum(axis=1).max())]
        return rows

    def _trans_table(self, kind: tuple[int, int], share: bool, width: int = 1) -> np.ndarray:
        table = self._trans.get(kind)
        n = len(self._free)
        if table is None or len(table) < n or table.shape[1] < width:
            if share:
                width = max(width, max((len(k[1]) for k in self._keys), default=1))
            grown = np.full((n, width), _UNKNOWN, dtype=np.int64)
            if table is not None:
                grown[: len(table), : table.shape[1]] = table
            self._trans[kind] = table = grown
        return table


def node_key(state: ClusterState, i: int) -> GpuKey:
    return state.nodes[i].gpu_type, tuple(sorted(state.gpu_free[i], reverse=True))


class NodeStateCache:
    """The interned GPU state of every node of one ``ClusterState``, refreshed lazily."""

    def __init__(self, table: FragTable) -> None:
        self.table = table
        self._state: ClusterState | None = None
        self._seen = np.zeros(0, dtype=np.int64)
        self._sids = np.zeros(0, dtype=np.int64)
        self.changed = np.zeros(0, dtype=np.int64)

    def sids(self, state: ClusterState) -> np.ndarray:
        """Every node's GPU state id; ``changed`` then holds the nodes re-interned
        (all of them when ``state`` is new to this cache)."""
        versions = state.cols.node_version
        if self._state is not state:
            self._state = state
            self._seen = versions.copy()
            self._sids = np.array(
                [self.table.state_id(node_key(state, i)) for i in range(len(state.nodes))],
                dtype=np.int64,
            )
            self.changed = np.arange(len(state.nodes))
            return self._sids
        changed = np.flatnonzero(versions != self._seen)
        for i in changed.tolist():
            self._sids[i] = self.table.state_id(node_key(state, i))
        self._seen[changed] = versions[changed]
        self.changed = changed
        return self._sids
