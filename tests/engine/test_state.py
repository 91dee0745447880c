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


def test_candidates_follow_whole_and_partly_used_gpus() -> None:
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


def test_node_columns_mirror_every_change_and_rollback() -> None:
    state = ClusterState([node("n0", 2, cpu=8000, mem=1000), node("n1", 4)])
    cp = state.checkpoint()
    state.assign("a", (ReplicaPlacement("n0", (1,), 300, cpu_milli=500, mem_mib=10),))
    state.assign("b", (ReplicaPlacement("n1", (0, 1), 1000),))
    c = state.cols
    assert c.gpu_free.tolist() == [[1000, 700, -1, -1], [0, 0, 1000, 1000]]
    assert (c.cpu_free[0], c.mem_free[0], c.full_free[0], c.max_free[0]) == (7500, 990, 1, 1000)
    assert c.free_total.tolist() == [1700, 2000]
    assert c.tags[0, c.tag_index[(1, True)]] == 1 and c.tags[1, c.tag_index[(2, False)]] == 1
    versions = c.node_version.copy()
    state.rollback(cp)
    assert c.gpu_free[:, :2].tolist() == [[1000, 1000], [1000, 1000]]
    assert c.tags.sum() == 0 and (c.node_version > versions).all()


def test_candidate_array_matches_fits_on_for_every_node() -> None:
    state = ClusterState(
        [node("n0", 2, cpu=4000), node("n1", 8), node("n2", 1, gpu_type="T4", mem=100)]
    )
    state.assign("x", (ReplicaPlacement("n1", (0, 1, 2), 1000), ReplicaPlacement("n1", (3,), 700)))
    for shape in [
        Shape(gpus=0, gpu_milli=0, cpu_milli=5000),
        Shape(gpus=1, gpu_milli=300),
        Shape(gpus=1, gpu_milli=300, mem_mib=200),
        Shape(gpus=4),
        Shape(gpus=5),
    ]:
        want = [i for i in range(3) if state.fits_on(i, shape)]
        assert state.candidate_array(shape).tolist() == want
        assert state.candidates(shape) == want
    assert state.candidates(Shape(gpus=1), ["T4"]) == [2]
    assert state.candidates(Shape(gpus=1), ["H100"]) == []


def test_content_hash_and_free_follow_the_free_capacity_of_schedulable_nodes() -> None:
    state = ClusterState([node("n0", 8), node("n1", 8)])
    empty = state.content_hash
    state.assign("a", (ReplicaPlacement("n0", (0, 1), 1000),))
    held = state.content_hash
    assert held != empty and state.free_milli == 14_000
    state.release("a")
    assert state.content_hash == empty
    cp = state.checkpoint()
    state.assign("a", (ReplicaPlacement("n0", (0, 1), 1000),))
    assert state.content_hash == held
    state.rollback(cp)
    assert state.content_hash == empty
    # A drained node's free GPUs are not free to place on.
    state.assign("b", (ReplicaPlacement("n1", (0,), 1000),))
    state.set_schedulable("n1", False)
    assert state.free_milli == 8_000 and state.capacity_milli == 8_000
    state.release("b")
    assert state.free_milli == 8_000
    state.set_schedulable("n1", True)
    assert state.free_milli == 16_000


_LOADS = [
    # (name, holdings): every kind of replica a cycle loads, across nodes and racks
    ("whole GPUs", [("a", (ReplicaPlacement("n0", (0, 1)),))]),
    ("a share", [("a", (ReplicaPlacement("n1", (2,), 300, cpu_milli=500, mem_mib=64),))]),
    (
        "a gang over two nodes",
        [("g", (ReplicaPlacement("n0", (0, 1, 2)), ReplicaPlacement("n2", (0, 1, 2))))],
    ),
    (
        "shares stacked on one GPU, CPU-only and a drained node",
        [
            ("s1", (ReplicaPlacement("n1", (0,), 400),)),
            ("s2", (ReplicaPlacement("n1", (0,), 600, cpu_milli=1000),)),
            ("c", (ReplicaPlacement("n2", (), 0, cpu_milli=2000, mem_mib=128),)),
            ("d", (ReplicaPlacement("n3", (1, 3)),)),
        ],
    ),
]


@pytest.mark.parametrize(("name", "holdings"), _LOADS, ids=[n for n, _ in _LOADS])
def test_load_is_assigning_each_then_committing(
    name: str, holdings: list[tuple[str, tuple[ReplicaPlacement, ...]]]
) -> None:
    def fresh() -> ClusterState:
        nodes = [node(f"n{i}", 4, cpu=8000, mem=1000, rack=f"r{i // 2}") for i in range(4)]
        state = ClusterState(nodes)
        state.set_schedulable("n3", False)
        return state

    one_by_one, loaded = fresh(), fresh()
    for job_id, placement in holdings:
        one_by_one.assign(job_id, placement)
    one_by_one.commit()
    loaded.load(holdings)
    for attr in (
        "gpu_free",
        "cpu_free",
        "mem_free",
        "full_free",
        "rack_free_gpus",
        "holdings",
        "allocated_milli",
        "free_milli",
        "content_hash",
    ):
        assert getattr(loaded, attr) == getattr(one_by_one, attr), attr
    assert loaded.checkpoint() == one_by_one.checkpoint() == 0
    a, b = one_by_one.cols, loaded.cols
    assert a.tag_index == b.tag_index
    for column in ("cpu_free", "mem_free", "gpu_free", "full_free", "free_total", "max_free"):
        assert (getattr(a, column) == getattr(b, column)).all(), column
    assert (a.tags == b.tags).all() and (a.node_version == b.node_version).all()


def test_load_refuses_an_overcommitted_gpu() -> None:
    state = ClusterState([node("n0", 2)])
    with pytest.raises(ValueError, match="no room"):
        state.load(
            [
                ("a", (ReplicaPlacement("n0", (0,), 700),)),
                ("b", (ReplicaPlacement("n0", (0,), 400),)),
            ]
        )
