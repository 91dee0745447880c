"""Mutable free capacity of a cluster, with incremental indexes and an undo log.

``ClusterState`` is the working copy one scheduling cycle (or one simulator run)
mutates. Every ``assign``/``release`` appends to an undo log so that a what-if
(a gang that may not fit, a preemption plan) can be tried and rolled back.

Indexes kept up to date on every change, so a placement never scans every node:
- per rack, free whole GPUs;
- numpy columns (``cols``) of every node's free CPU, memory, GPU shares and
  fully free GPU count, so a candidate filter or a policy's scoring is a few
  vector operations instead of a Python loop over nodes;
- a per-node change counter (``cols.node_version``), so a policy can cache what
  it derives from a node and refresh only the nodes that changed;
- the free GPU on schedulable nodes (``free_milli``) and a hash of every node's free
  capacity (``content_hash``): equal states hash equal, so an answer that depends only
  on free capacity can be remembered per state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mosu.core.models import GPU_MILLI, Node, NodeState, Placement, ReplicaPlacement, Shape


@dataclass(slots=True)
class _Undo:
    job_id: str
    placement: Placement
    was_assign: bool


_HASH_MASK = (1 << 64) - 1

_NO_GPU = -1
"""Padding in ``NodeColumns.gpu_free`` for GPU slots a node does not have."""


class NodeColumns:
    """Vector mirrors of a ``ClusterState``'s per-node figures, kept in step by it.

    ``gpu_free`` is nodes x (most GPUs on any node), padded with -1.
    ``tags`` counts, per node, the replicas it holds by kind of GPU request:
    column ``tag_index[(gpus, fractional)]``; ``(0, False)`` is CPU-only.
    """

    def __init__(self, nodes: Sequence[Node], type_ids: dict[str, int]) -> None:
        n = len(nodes)
        width = max((node.gpus for node in nodes), default=0)
        self.gpus = np.array([node.gpus for node in nodes], dtype=np.int64)
        self.gpu_type = np.array([type_ids[node.gpu_type] for node in nodes], dtype=np.int64)
        self.cpu_free = np.array([node.cpu_milli for node in nodes], dtype=np.int64)
        self.mem_free = np.array([node.mem_mib for node in nodes], dtype=np.int64)
        self.gpu_free = np.full((n, width), _NO_GPU, dtype=np.int64)
        for i, node in enumerate(nodes):
            self.gpu_free[i, : node.gpus] = GPU_MILLI
        self.full_free = self.gpus.copy()
        self.free_total = self.gpus * GPU_MILLI
        self.max_free = np.where(self.gpus > 0, GPU_MILLI, 0).astype(np.int64)
        self.schedulable = np.array([node.state == NodeState.READY for node in nodes], dtype=bool)
        self.node_version = np.zeros(n, dtype=np.int64)
        self.tag_index: dict[tuple[int, bool], int] = {}
        self.tags = np.zeros((n, 0), dtype=np.int64)

    def tag_column(self, gpus: int, fractional: bool) -> int:
        key = (gpus, fractional)
        col = self.tag_index.get(key)
        if col is None:
            col = len(self.tag_index)
            self.tag_index[key] = col
            self.tags = np.hstack([self.tags, np.zeros((len(self.tags), 1), dtype=np.int64)])
        return col


class ClusterState:
    """Free capacity per node and GPU; who holds what."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.index_of: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in self.index_of:
                raise ValueError(f"duplicate node name {node.name!r}")
            self.index_of[node.name] = i
        self.gpu_free: list[list[int]] = [[GPU_MILLI] * n.gpus for n in self.nodes]
        self.cpu_free: list[int] = [n.cpu_milli for n in self.nodes]
        self.mem_free: list[int] = [n.mem_mib for n in self.nodes]
        self.full_free: list[int] = [n.gpus for n in self.nodes]
        self.schedulable: list[bool] = [n.state == NodeState.READY for n in self.nodes]
        self.holdings: dict[str, Placement] = {}
        self._undo: list[_Undo] = []
        self.gpu_types: tuple[str, ...] = tuple(sorted({n.gpu_type for n in self.nodes}))
        self.most_gpus: int = max((n.gpus for n in self.nodes), default=0)
        """GPUs of the largest node, schedulable or not (nodes keep their GPUs)."""
        self.rack_free_gpus: dict[str, int] = {}
        self.capacity_milli = 0
        self.allocated_milli = 0
        self.free_milli = 0
        """Free GPU milli on schedulable nodes (a drained node's free GPUs are not)."""
        self.type_ids: dict[str, int] = {t: k for k, t in enumerate(self.gpu_types)}
        self.cols = NodeColumns(self.nodes, self.type_ids)
        self._type_masks: dict[tuple[str, ...], np.ndarray] = {}
        self._rack_nodes: dict[str, np.ndarray] | None = None
        # A hash of every node's free capacity and schedulability, kept up to date on
        # each change (a sum of per-node hashes): equal states have equal hashes, so a
        # caller may remember answers that depend only on the free capacity.
        self._node_hash: list[int] = [self._hash_of(i) for i in range(len(self.nodes))]
        self.content_hash: int = sum(self._node_hash) & _HASH_MASK
        for i, node in enumerate(self.nodes):
            self.rack_free_gpus.setdefault(node.rack, 0)
            if self.schedulable[i]:
                self.rack_free_gpus[node.rack] += node.gpus
                self.capacity_milli += node.gpus * GPU_MILLI
                self.free_milli += node.gpus * GPU_MILLI

    # -- queries -------------------------------------------------------------

    def fits_on(self, i: int, shape: Shape) -> bool:
        """Whether one replica of ``shape`` fits on node ``i`` now."""
        if not self.schedulable[i]:
            return False
        if self.cpu_free[i] < shape.cpu_milli or self.mem_free[i] < shape.mem_mib:
            return False
        if shape.gpus == 0:
            return True
        if shape.gpu_milli == GPU_MILLI:
            return self.full_free[i] >= shape.gpus
        return any(f >= shape.gpu_milli for f in self.gpu_free[i])

    def candidates(self, shape: Shape, gpu_types: Iterable[str] = ()) -> list[int]:
        """Nodes where one replica of ``shape`` fits, in ascending index order."""
        return self.candidate_array(shape, gpu_types).tolist()

    def candidate_array(
        self, shape: Shape, gpu_types: Iterable[str] = (), among: np.ndarray | None = None
    ) -> np.ndarray:
        """``candidates`` as an int64 array: one vector filter over the node columns;
        with ``among`` (node indices, ascending), over those nodes only."""
        c = self.cols
        types = tuple(gpu_types)
        if among is None:
            mask = self.type_mask(types)  # (a new array)
            cpu_free, mem_free = c.cpu_free, c.mem_free
            full_free, max_free = c.full_free, c.max_free
        else:
            mask = self._of_types(types)[among] & c.schedulable[among]
            cpu_free, mem_free = c.cpu_free[among], c.mem_free[among]
            full_free, max_free = c.full_free[among], c.max_free[among]
        # Free CPU and memory are never negative: a shape asking none needs no test.
        if shape.cpu_milli > 0:
            mask &= cpu_free >= shape.cpu_milli
        if shape.mem_mib > 0:
            mask &= mem_free >= shape.mem_mib
        if shape.gpus:
            if shape.gpu_milli == GPU_MILLI:
                mask &= full_free >= shape.gpus
            else:
                mask &= max_free >= shape.gpu_milli
        return np.flatnonzero(mask) if among is None else among[mask]

    def rack_nodes(self, rack: str) -> np.ndarray:
        """The indices of ``rack``'s nodes, ascending (``candidate_array``'s ``among``)."""
        if self._rack_nodes is None:
            by_rack: dict[str, list[int]] = {}
            for i, node in enumerate(self.nodes):
                by_rack.setdefault(node.rack, []).append(i)
            self._rack_nodes = {r: np.asarray(ids, dtype=np.int64) for r, ids in by_rack.items()}
        return self._rack_nodes.get(rack, np.empty(0, dtype=np.int64))

    def type_mask(self, gpu_types: tuple[str, ...]) -> np.ndarray:
        """Schedulable nodes whose GPU type is one of ``gpu_types`` (any type if empty)."""
        return self._of_types(gpu_types) & self.cols.schedulable

    def _of_types(self, gpu_types: tuple[str, ...]) -> np.ndarray:
        """Nodes whose GPU type is one of ``gpu_types`` (any type if empty); shared."""
        mask = self._type_masks.get(gpu_types)
        if mask is None:
            ids = [self.type_ids[t] for t in gpu_types if t in self.type_ids]
            mask = np.isin(self.cols.gpu_type, ids) if gpu_types else np.ones(len(self.nodes), bool)
            self._type_masks[gpu_types] = mask
        return mask

    def free_gpu_milli(self, i: int) -> int:
        return sum(self.gpu_free[i]) if self.schedulable[i] else 0

    def allocation_ratio(self) -> float:
        return self.allocated_milli / self.capacity_milli if self.capacity_milli else 0.0

    # -- changes -------------------------------------------------------------

    def assign(self, job_id: str, placement: Placement) -> None:
        """Take the capacity of ``placement`` for ``job_id``; raises if it does not fit."""
        if job_id in self.holdings:
            raise ValueError(f"job {job_id!r} already holds an allocation")
        applied: list[ReplicaPlacement] = []
        try:
            for rp in placement:
                self._apply(rp, -1)
                applied.append(rp)
        except ValueError:
            for rp in applied:
                self._apply(rp, +1)
            raise
        self.holdings[job_id] = placement
        self._undo.append(_Undo(job_id, placement, True))

    def load(self, holdings: Iterable[tuple[str, Placement]]) -> None:
        """``assign`` each (job, placement) in turn, then ``commit``: the same state,
        with the node columns and hashes written once per node rather than once per
        replica (a cycle opens by loading every running job). Raises as ``assign``
        would; the state is then unusable."""
        index_of, gpu_free, cpu_free, mem_free = (
            self.index_of,
            self.gpu_free,
            self.cpu_free,
            self.mem_free,
        )
        full_free, schedulable, nodes = self.full_free, self.schedulable, self.nodes
        rack_free, own = self.rack_free_gpus, self.holdings
        c = self.cols
        applied: dict[int, int] = {}
        tagged: dict[tuple[int, int], int] = {}
        allocated = freed = 0
        for job_id, placement in holdings:
            if job_id in own:
                raise ValueError(f"job {job_id!r} already holds an allocation")
            for rp in placement:
                i = index_of[rp.node]
                free = gpu_free[i]
                indices, milli = rp.gpu_indices, rp.gpu_milli
                for g in indices:
                    if not 0 <= g < len(free) or free[g] < milli:
                        raise ValueError(f"GPU {g} of node {rp.node!r} has no room for {milli}")
                if len(indices) > 1 and len(set(indices)) != len(indices):
                    raise ValueError(f"replica on {rp.node!r} names a GPU twice")
                if cpu_free[i] < rp.cpu_milli or mem_free[i] < rp.mem_mib:
                    raise ValueError(f"node {rp.node!r} has no CPU or memory room for the replica")
                for g in indices:
                    free[g] -= milli
                cpu_free[i] -= rp.cpu_milli
                mem_free[i] -= rp.mem_mib
                was = full_free[i]
                full = full_free[i] = free.count(GPU_MILLI)
                if full != was and schedulable[i]:
                    rack_free[nodes[i].rack] += full - was
                n = len(indices)
                key = (n, n == 1 and milli < GPU_MILLI)
                col = c.tag_index.get(key)
                if col is None:
                    col = c.tag_column(*key)
                tagged[(i, col)] = tagged.get((i, col), 0) + 1
                applied[i] = applied.get(i, 0) + 1
                allocated += milli * n
                if schedulable[i]:
                    freed += milli * n
            own[job_id] = placement
        self.allocated_milli += allocated
        self.free_milli -= freed
        self._undo.clear()
        if not applied:
            return
        touched = np.fromiter(applied, dtype=np.int64, count=len(applied))
        rows = touched.tolist()
        c.cpu_free[touched] = [cpu_free[i] for i in rows]
        c.mem_free[touched] = [mem_free[i] for i in rows]
        c.full_free[touched] = [full_free[i] for i in rows]
        c.node_version[touched] += np.fromiter(applied.values(), dtype=np.int64)
        for i in rows:
            free = gpu_free[i]
            if free:
                c.gpu_free[i, : len(free)] = free
                c.free_total[i] = sum(free)
                c.max_free[i] = max(free)
            self._rehash(i)
        for (i, col), count in tagged.items():
            c.tags[i, col] += count

    def release(self, job_id: str) -> Placement:
        """Give back everything ``job_id`` holds."""
        placement = self.holdings.pop(job_id)
        for rp in placement:
            self._apply(rp, +1)
        self._undo.append(_Undo(job_id, placement, False))
        return placement

    def checkpoint(self) -> int:
        return len(self._undo)

    def rollback(self, checkpoint: int) -> None:
        """Undo every change made since ``checkpoint``."""
        while len(self._undo) > checkpoint:
            entry = self._undo.pop()
            if entry.was_assign:
                del self.holdings[entry.job_id]
                for rp in entry.placement:
                    self._apply(rp, +1)
            else:
                for rp in entry.placement:
                    self._apply(rp, -1)
                self.holdings[entry.job_id] = entry.placement

    def commit(self) -> None:
        """Forget the undo log: what is assigned now stays."""
        self._undo.clear()

    def set_schedulable(self, name: str, schedulable: bool) -> None:
        """Take a node out of (or back into) placement; its holdings stay."""
        i = self.index_of[name]
        if self.schedulable[i] == schedulable:
            return
        self._unindex(i)
        self.schedulable[i] = schedulable
        self.cols.schedulable[i] = schedulable
        self.cols.node_version[i] += 1
        self._rehash(i)
        self._index(i)
        delta = len(self.gpu_free[i]) * GPU_MILLI
        self.capacity_milli += delta if schedulable else -delta
        free = sum(self.gpu_free[i])
        self.free_milli += free if schedulable else -free

    # -- internals -----------------------------------------------------------

    def _apply(self, rp: ReplicaPlacement, sign: int) -> None:
        # Every assign, release and rollback comes here: the node's figures, its rack's
        # free GPUs and its columns are updated in one go.
        i = self.index_of[rp.node]
        free = self.gpu_free[i]
        indices, milli = rp.gpu_indices, rp.gpu_milli
        if sign < 0:
            for g in indices:
                if not 0 <= g < len(free) or free[g] < milli:
                    raise ValueError(f"GPU {g} of node {rp.node!r} has no room for {milli}")
            if len(indices) > 1 and len(set(indices)) != len(indices):
                raise ValueError(f"replica on {rp.node!r} names a GPU twice")
            if self.cpu_free[i] < rp.cpu_milli or self.mem_free[i] < rp.mem_mib:
                raise ValueError(f"node {rp.node!r} has no CPU or memory room for the replica")
        for g in indices:
            free[g] += sign * milli
        cpu = self.cpu_free[i] = self.cpu_free[i] + sign * rp.cpu_milli
        mem = self.mem_free[i] = self.mem_free[i] + sign * rp.mem_mib
        was = self.full_free[i]
        full = self.full_free[i] = free.count(GPU_MILLI)
        if full != was and self.schedulable[i]:
            self.rack_free_gpus[self.nodes[i].rack] += full - was
        c = self.cols
        c.cpu_free[i] = cpu
        c.mem_free[i] = mem
        c.full_free[i] = full
        if free:
            c.gpu_free[i, : len(free)] = free
            c.free_total[i] = sum(free)
            c.max_free[i] = max(free)
        n = len(indices)
        key = (n, n == 1 and milli < GPU_MILLI)
        col = c.tag_index.get(key)
        if col is None:
            col = c.tag_column(*key)
        c.tags[i, col] -= sign
        c.node_version[i] += 1
        self._rehash(i)
        self.allocated_milli -= sign * milli * n
        if self.schedulable[i]:
            self.free_milli += sign * milli * n

    def _hash_of(self, i: int) -> int:
        return hash((i, self.schedulable[i], self.cpu_free[i], self.mem_free[i], *self.gpu_free[i]))

    def _rehash(self, i: int) -> None:
        new = self._hash_of(i)
        self.content_hash = (self.content_hash + new - self._node_hash[i]) & _HASH_MASK
        self._node_hash[i] = new

    def _unindex(self, i: int) -> None:
        if self.schedulable[i]:
            self.rack_free_gpus[self.nodes[i].rack] -= self.full_free[i]

    def _index(self, i: int) -> None:
        if self.schedulable[i]:
            self.rack_free_gpus[self.nodes[i].rack] += self.full_free[i]

    def iter_holdings(self) -> Iterator[tuple[str, Placement]]:
        for job_id in sorted(self.holdings):
            yield job_id, self.holdings[job_id]
