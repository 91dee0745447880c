from __future__ import annotations

import pytest

from mosu.core.models import ReplicaPlacement, Shape
from mosu.engine.state import ClusterState
from tests.engine.helpers import node


def test_assign_and_release_restore_free_capacity() -> None:
    state = ClusterState([node("n0", 4, cpu=8000, mem=1000)])
    rp = ReplicaPlacement("n0", (0, 1), 1000, cpu_milli=2000, mem_mib=100)
    state.assign("j1", (rp,))
    assert state.gpu_free[0] == [0, 0, 1000, 1000]
    assert (state.cpu_free[0], state.mem_free[0], state.full_free[0]) == (6000, 900, 2)
    assert state.allocated_milli == 2000
    state.release("j1")
    assert state.gpu_free[0] == [1000] * 4
    assert (state.cpu_free[0], state.mem_free[0], state.allocated_milli) == (8000, 1000, 0)


def test_overcommitting_a_gpu_is_refused_and_leaves_state_unchanged() -> None:
    state = ClusterState([node("n0", 2)])
    state.assign("a", (ReplicaPlacement("n0", (0,), 700),))
    with pytest.raises(ValueError, match="no room"):
        state.assign("b", (ReplicaPlacement("n0", (1,), 1000), ReplicaPlacement("n0", (0,), 400)))
    assert state.gpu_free[0] == [300, 1000]
    assert "b" not in state.holdings


def test_rollback_undoes_assigns_and_releases() -> None:
    state = ClusterState([node("n0", 2), node("n1", 2)])
    state.assign("a", (ReplicaPlacement("n0", (0, 1)),))
    state.commit()
    cp = state.checkpoint()
    state.release("a")
    state.assign("b", (ReplicaPlacement("n1", (0,), 500),))
    state.rollback(cp)
    assert state.gpu_free == [[0, 0], [1000, 1000]]
    assert set(state.holdings) == {"a"}


def test_candidates_use_buckets_and_partial_gpus() -> None:
    state = ClusterState([node("n0", 2), node("n1", 8), node("n2", 1, gpu_type="T4")])
    state.assign("x", (ReplicaPlacement("n0", (0, 1), 1000),))
    assert state.candidates(Shape(gpus=4)) == [1]
    assert state.candidates(Shape(gpus=1)) == [1, 2]
    assert state.candidates(Shape(gpus=1), ["T4"]) == [2]
    state.release("x")
    state.assign("y", (ReplicaPlacement("n0", (0,), 600), ReplicaPlacement("n0", (1,), 1000)))
    assert state.candidates(Shape(gpus=1, gpu_milli=400)) == [0, 1, 2]
    assert state.candidates(Shape(gpus=1, gpu_milli=500)) == [1, 2]


def test_unschedulable_node_is_never_a_candidate() -> None:
    state = ClusterState([node("n0", 8), node("n1", 8)])
    state.set_schedulable("n0", False)
    assert state.candidates(Shape(gpus=1)) == [1]
    assert state.capacity_milli == 8000
