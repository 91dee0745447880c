"""How scarce the homes of each task type are across the whole cluster.

Fragmentation on one node (``frag.py``) only costs anything if the cluster runs
out of places for the task type it shuts out: breaking a home for a type of
which a thousand homes remain and ten tasks are still expected loses nothing,
breaking one of the last ten loses a task. So mosu weighs each task type's
fragmentation by its *scarcity*::

    scarcity_t = min(1, arrivals_t / homes_t)

- ``homes_t``: replicas of type ``t`` the cluster could still host now, each node
  counted on its own (its free GPU slots for ``t``, its CPU and its memory,
  whichever runs out first; zero on GPU types ``t`` does not accept);
- ``arrivals_t``: replicas of type ``t`` expected before the free GPU it can use
  is gone: that free GPU over the mean GPU a task of the mix asks, times ``t``'s
  share of the mix.

Early in a fill every type has homes to spare and only the rare large ones
(whole 8-GPU nodes) weigh; as the cluster fills, the types whose homes run out
(whole GPUs, large shares) weigh fully and the ones with plenty (small shares
that fit any remainder) stop dictating. Everything comes from the task mix and
the cluster; nothing is fitted.

CPU-only task types are left at scarcity 1: they never use a GPU, so their
term in the fragmentation measure does not depend on where GPUs are split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mosu.core.models import GPU_MILLI
from mosu.engine.placement.taskmix import TaskType
from mosu.engine.state import ClusterState


def accepts_matrix(tasks: Sequence[TaskType], gpu_types: Sequence[str]) -> np.ndarray:
    """``[k, t]``: task type ``t`` asks GPUs and may run on GPU type ``k``."""
    return np.array(
        [[t.gpus > 0 and (not t.gpu_types or k in t.gpu_types) for t in tasks] for k in gpu_types],
        dtype=bool,
    ).reshape(len(gpu_types), len(tasks))


def gpu_slots(gpu_free: np.ndarray, gpus: int, milli: int) -> np.ndarray:
    """Per node (rows of free shares, -1 padded), how many replicas asking ``gpus`` x
    ``milli`` its GPUs could take: shares stack on any GPU with room, whole GPUs
    come from fully free ones."""
    if milli < GPU_MILLI:
        return (np.maximum(gpu_free, 0) // milli).sum(axis=1)
    return (gpu_free == GPU_MILLI).sum(axis=1) // gpus


def homes(state: ClusterState, tasks: Sequence[TaskType]) -> np.ndarray:
    """Per task type, the replicas the cluster could host now (0 for CPU-only types)."""
    return _per_node(state, tasks, np.arange(len(state.nodes))).sum(axis=0).astype(np.float64)


def _per_node(state: ClusterState, tasks: Sequence[TaskType], rows: np.ndarray) -> np.ndarray:
    """``[r, t]``: the replicas of task type ``t`` node ``rows[r]`` could host now."""
    c = state.cols
    kinds = sorted({(t.gpus, t.gpu_milli) for t in tasks if t.gpus})
    if not kinds:
        return np.zeros((len(rows), len(tasks)), dtype=np.int64)
    gpu_free = c.gpu_free[rows]
    slots = np.stack([gpu_slots(gpu_free, *kind) for kind in kinds], axis=1)
    kind_of = np.array([kinds.index((t.gpus, t.gpu_milli)) if t.gpus else 0 for t in tasks])
    per_node = slots[:, kind_of]
    for need, free in (
        (np.array([t.cpu_milli for t in tasks]), c.cpu_free[rows]),
        (np.array([t.mem_mib for t in tasks]), c.mem_free[rows]),
    ):
        # A type asking none of a resource is never limited by it.
        limit = free[:, None] // np.maximum(need, 1)[None, :]
        per_node = np.where(need > 0, np.minimum(per_node, limit), per_node)
    ok = accepts_matrix(tasks, state.gpu_types)[c.gpu_type[rows]] & c.schedulable[rows, None]
    return np.where(ok, per_node, 0).astype(np.int64)


class HomesCache:
    """``homes`` of one ``ClusterState`` kept per node: a query recounts only the nodes
    whose ``cols.node_version`` moved since the last one (all of them for a new
    state). Counts are whole numbers, so the kept total equals a full recount."""

    def __init__(self, tasks: Sequence[TaskType]) -> None:
        self.tasks = tasks
        self._state: ClusterState | None = None
        self._seen = np.zeros(0, dtype=np.int64)
        self._rows = np.zeros((0, len(tasks)), dtype=np.int64)
        self._total = np.zeros(len(tasks), dtype=np.int64)

    def homes(self, state: ClusterState) -> np.ndarray:
        versions = state.cols.node_version
        if self._state is not state or len(versions) != len(self._seen):
            self._state = state
            self._seen = versions.copy()
            self._rows = _per_node(state, self.tasks, np.arange(len(state.nodes)))
            self._total = self._rows.sum(axis=0)
        else:
            changed = np.flatnonzero(versions != self._seen)
            if len(changed):
                rows = _per_node(state, self.tasks, changed)
                self._total += (rows - self._rows[changed]).sum(axis=0)
                self._rows[changed] = rows
                self._seen[changed] = versions[changed]
        return self._total.astype(np.float64)


def expected_arrivals(
    state: ClusterState, tasks: Sequence[TaskType], weights: np.ndarray
) -> np.ndarray:
    """Per task type, the replicas expected before the free GPU it accepts runs out."""
    c = state.cols
    shares = weights / weights.sum()
    mean_gpu = float((shares * [t.total_gpu_milli for t in tasks]).sum())
    if mean_gpu <= 0:
        return np.zeros(len(tasks))
    free = np.where(c.schedulable, c.free_total, 0)
    free_by_type = np.bincount(c.gpu_type, weights=free, minlength=len(state.gpu_types))
    reachable = accepts_matrix(tasks, state.gpu_types).T.astype(np.float64) @ free_by_type
    return reachable / mean_gpu * shares


def scarcity(
    state: ClusterState,
    tasks: Sequence[TaskType],
    weights: np.ndarray,
    have: np.ndarray | None = None,
) -> np.ndarray:
    """``min(1, arrivals / homes)`` per task type; 1 for CPU-only types and types
    without a home left. ``have``: ``homes(state, tasks)`` when already known."""
    if have is None:
        have = homes(state, tasks)
    want = expected_arrivals(state, tasks, weights)
    gpu_task = np.array([t.gpus > 0 for t in tasks], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(have > 0, want / have, 1.0)
    return np.where(gpu_task, np.minimum(1.0, ratio), 1.0)
