"""Home scarcity behind mosu's placement, checked against hand computations.

The cluster of every case: node ``a`` has two GPUs of type A, one of them half
used (free shares 1000 and 500), 8 cores and 1,000 MiB; node ``t4`` has one free
T4 GPU, 4 cores and 1,000 MiB.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.core.models import Node, ReplicaPlacement, Shape
from mosu.engine.placement import mosu as mosu_policy
from mosu.engine.placement.frag import FragTable
from mosu.engine.placement.homes import (
    HomesCache,
    expected_arrivals,
    gpu_slots,
    homes,
    scarcity,
)
from mosu.engine.placement.mosu import Mosu
from mosu.engine.placement.taskmix import TaskMix, TaskType
from mosu.engine.state import ClusterState

HALF = TaskType(cpu_milli=2000, mem_mib=0, gpus=1, gpu_milli=500)
WHOLE = TaskType(cpu_milli=4000, mem_mib=0, gpus=1, gpu_milli=1000)
PAIR = TaskType(cpu_milli=0, mem_mib=0, gpus=2, gpu_milli=1000)
T4_ONLY = TaskType(cpu_milli=1000, mem_mib=500, gpus=1, gpu_milli=1000, gpu_types=("T4",))
CPU_ONLY = TaskType(cpu_milli=1000, mem_mib=0, gpus=0, gpu_milli=0)
TASKS = [HALF, WHOLE, PAIR, T4_ONLY, CPU_ONLY]
COUNTS = [4, 2, 1, 1, 2]


def cluster() -> ClusterState:
    state = ClusterState(
        [
            Node(name="a", gpu_type="A", gpus=2, cpu_milli=8000, mem_mib=1000),
            Node(name="t4", gpu_type="T4", gpus=1, cpu_milli=4000, mem_mib=1000),
        ]
    )
    state.assign("held", (ReplicaPlacement(node="a", gpu_indices=(1,), gpu_milli=500),))
    state.commit()
    return state


@pytest.mark.parametrize(
    ("name", "gpus", "milli", "want_slots"),
    [
        ("a share stacks on every GPU with room", 1, 500, [2 + 1, 2 + 2]),
        ("a smaller share fits once in the 500 left of a GPU", 1, 300, [3 + 1, 3 + 3]),
        ("a whole GPU comes only from fully free ones", 1, 1000, [1, 2]),
        ("a pair of GPUs needs two fully free ones", 2, 1000, [0, 1]),
    ],
)
def test_gpu_slots(name: str, gpus: int, milli: int, want_slots: list[int]) -> None:
    # Two nodes of up to three GPUs (-1: no such GPU): shares 1000 and 500; two free GPUs.
    rows = np.array([[1000, 500, -1], [1000, 1000, -1]])
    assert gpu_slots(rows, gpus, milli).tolist() == want_slots


def test_homes_count_each_node_alone_and_stop_at_cpu_memory_or_gpu_type() -> None:
    got = dict(zip(TASKS, homes(cluster(), TASKS).tolist(), strict=True))
    want_homes = {
        HALF: 3 + 2,  # a: 2 + 1 GPU slots (4 by CPU); t4: 2 slots, 2 by CPU
        WHOLE: 1 + 1,  # one fully free GPU each, CPU for 2 and 1
        PAIR: 0,  # no node has two fully free GPUs
        T4_ONLY: 1,  # only t4 (memory would allow 2)
        CPU_ONLY: 0,  # not counted: it never uses a GPU
    }
    assert got == want_homes


def test_expected_arrivals_share_the_free_gpu_each_type_accepts() -> None:
    weights = np.array(COUNTS, dtype=float)
    got = expected_arrivals(cluster(), TASKS, weights)
    # Mean GPU per task: 0.4 x 500 + 0.2 x 1000 + 0.1 x 2000 + 0.1 x 1000 = 700 milli.
    # Free GPU: 1500 on A, 1000 on T4; the T4-only type reaches only the latter.
    want_arrivals = [2500 / 700 * 0.4, 2500 / 700 * 0.2, 2500 / 700 * 0.1, 1000 / 700 * 0.1, 0]
    assert got == pytest.approx(want_arrivals)


def test_scarcity_is_arrivals_over_homes_capped_at_one() -> None:
    got = scarcity(cluster(), TASKS, np.array(COUNTS, dtype=float))
    want_scarcity = [
        2 / 7,  # 10/7 arrivals over 5 homes
        5 / 14,  # 5/7 over 2
        1.0,  # no home left: fully weighted
        1 / 7,  # 1/7 over 1
        1.0,  # CPU-only types keep their weight
    ]
    assert got == pytest.approx(want_scarcity)


@pytest.mark.parametrize(
    ("name", "weights", "frees", "want_frag"),
    [
        ("half and whole weighted equally see half of a 600 share", (0.5, 0.5), (600,), 300.0),
        ("only the half weighted: a 600 share is no fragment", (1.0, 0.0), (600,), 0.0),
        ("only the whole weighted: a 600 share is all fragment", (0.0, 1.0), (600,), 600.0),
        (
            "a state first seen after reweighing uses the new weights",
            (0.0, 1.0),
            (1000, 700),
            700.0,
        ),
    ],
)
def test_reweigh_changes_the_fragmentation_of_every_state(
    name: str, weights: tuple[float, float], frees: tuple[int, ...], want_frag: float
) -> None:
    table = FragTable([(WHOLE, 0.5), (HALF, 0.5)])
    table.state_id(("A", (600,)))
    assert table.tasks == (HALF, WHOLE)  # ordered by CPU
    table.reweight(np.array(weights))
    sid = table.state_id(("A", frees))
    assert float(table.frag(np.array([sid]), np.array([10_000]))[0]) == pytest.approx(want_frag)


def test_mosu_weighs_the_mix_by_scarcity_before_deciding() -> None:
    mix = TaskMix(tuple(sorted(zip(TASKS, COUNTS, strict=True))))
    policy = Mosu(mix, random.Random(0))
    state = cluster()
    shape = Shape(gpus=1, gpu_milli=500, cpu_milli=2000)
    assert policy.select(state, shape, state.candidates(shape)) is not None
    got = dict(zip(policy.table.tasks, policy.table.weights.tolist(), strict=True))
    want_weights = {
        HALF: 0.4 * 2 / 7,
        WHOLE: 0.2 * 5 / 14,
        PAIR: 0.1,
        T4_ONLY: 0.1 / 7,
        CPU_ONLY: 0.2,
    }
    assert got == pytest.approx(want_weights)


SHARE_HALF = TaskType(cpu_milli=0, mem_mib=0, gpus=1, gpu_milli=500)
SHARE_WHOLE = TaskType(cpu_milli=0, mem_mib=0, gpus=1, gpu_milli=1000)
SHARE_SMALL = TaskType(cpu_milli=1000, mem_mib=0, gpus=1, gpu_milli=300)


def half_used_cluster() -> ClusterState:
    """``fresh``: one free GPU; ``hole``: one GPU with 700 free; ``halves``: eight GPUs
    with 500 free each and too little CPU for the arriving 0.3 share."""
    state = ClusterState(
        [
            Node(name="fresh", gpu_type="A", gpus=1, cpu_milli=10_000, mem_mib=1000),
            Node(name="hole", gpu_type="A", gpus=1, cpu_milli=10_000, mem_mib=1000),
            Node(name="halves", gpu_type="A", gpus=8, cpu_milli=500, mem_mib=1000),
        ]
    )
    state.assign("h", (ReplicaPlacement(node="hole", gpu_indices=(0,), gpu_milli=300),))
    for g in range(8):
        state.assign(f"x{g}", (ReplicaPlacement(node="halves", gpu_indices=(g,), gpu_milli=500),))
    state.commit()
    return state


@pytest.mark.parametrize(
    ("name", "weigh_by_scarcity", "want_node"),
    [
        # Mix 20 halves, 7 whole GPUs, 1 small share; 5,700 free milli, 617.9 per task.
        # Halves: 6.59 expected against 11 homes (2 + 1 + 8), scarcity 0.599, weight
        # 0.428; whole GPUs: 2.31 expected against 1 home, weight 0.25. Taking the fresh
        # GPU costs the whole-GPU tasks 700 (-175); the hole gains them 300 and costs the
        # halves 400 (75 - 171 = -96): the hole wins.
        ("a share goes into a hole when the whole GPUs are the scarce homes", True, 1),
        # Weighted by count alone (halves 0.714): the hole scores 75 - 286 = -211 and the
        # fresh GPU -175, so the share breaks the last whole GPU.
        ("weighted by count alone the share breaks the last whole GPU", False, 0),
    ],
)
def test_scarcity_decides_between_a_hole_and_a_fresh_gpu(
    name: str, weigh_by_scarcity: bool, want_node: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not weigh_by_scarcity:
        monkeypatch.setattr(
            mosu_policy, "scarcity", lambda state, tasks, w, have=None: np.ones(len(tasks))
        )
    mix = TaskMix(tuple(sorted([(SHARE_HALF, 20), (SHARE_WHOLE, 7), (SHARE_SMALL, 1)])))
    policy = Mosu(mix, random.Random(0))
    state = half_used_cluster()
    shape = Shape(gpus=1, gpu_milli=300, cpu_milli=1000)
    assert state.candidates(shape) == [0, 1]
    assert policy.select(state, shape, state.candidates(shape)) == (want_node, (0,))


TYPES = st.builds(
    TaskType,
    cpu_milli=st.sampled_from([0, 1000, 4000]),
    mem_mib=st.just(0),
    gpus=st.sampled_from([0, 1, 2]),
    gpu_milli=st.sampled_from([250, 500, 1000]),
    gpu_types=st.sampled_from([(), ("A",), ("B",)]),
).map(lambda t: t if t.gpus else TaskType(t.cpu_milli, 0, 0, 0, ()))
FREES = st.lists(st.sampled_from([0, 100, 250, 500, 750, 1000]), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    mix=st.lists(TYPES, min_size=1, max_size=5, unique=True),
    weights=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5),
    gpu_type=st.sampled_from(["A", "B"]),
    frees=FREES,
    cpu=st.integers(0, 8000),
)
def test_a_reweighed_table_measures_like_a_table_built_with_those_weights(
    mix: list[TaskType], weights: list[float], gpu_type: str, frees: list[int], cpu: int
) -> None:
    key = (gpu_type, tuple(sorted(frees, reverse=True)))
    table = FragTable([(t, 1.0) for t in mix], inaccessible_is_fragment=False)
    table.state_id(key)
    new = np.array(weights[: len(table.tasks)])
    table.reweight(new)
    fresh = FragTable(list(zip(table.tasks, new, strict=True)), inaccessible_is_fragment=False)
    got = table.frag(np.array([table.state_id(key)]), np.array([cpu]))
    want_frag = fresh.frag(np.array([fresh.state_id(key)]), np.array([cpu]))
    assert got == pytest.approx(want_frag)


@settings(max_examples=60, deadline=None)
@given(
    mix=st.lists(TYPES, min_size=1, max_size=5, unique=True),
    held=st.lists(st.sampled_from([0, 250, 500, 1000]), min_size=3, max_size=3),
)
def test_scarcity_is_a_weight_between_zero_and_one(mix: list[TaskType], held: list[int]) -> None:
    state = ClusterState(
        [
            Node(name="a", gpu_type="A", gpus=2, cpu_milli=8000, mem_mib=1000),
            Node(name="b", gpu_type="B", gpus=1, cpu_milli=4000, mem_mib=1000),
        ]
    )
    for k, (node, gpu) in enumerate([("a", 0), ("a", 1), ("b", 0)]):
        if held[k]:
            rp = ReplicaPlacement(node=node, gpu_indices=(gpu,), gpu_milli=held[k])
            state.assign(f"h{k}", (rp,))
    state.commit()
    got = scarcity(state, mix, np.ones(len(mix)))
    assert ((got > 0) | (expected_arrivals(state, mix, np.ones(len(mix))) == 0)).all()
    assert (got <= 1).all()
    assert (homes(state, mix) >= 0).all()


def test_a_mix_needing_no_cpu_is_not_held_back_by_a_node_without_cpu() -> None:
    # Every GPU task of the mix needs no CPU or memory: free GPUs are fed however
    # little CPU and memory a node has left, zero included (not 0 x inf = nan).
    mix = TaskMix.observe([(Shape(gpus=2), ()), (Shape(gpus=1, gpu_milli=500), ())])
    policy = Mosu(mix, random.Random(0))
    state = ClusterState([Node(name="bare", gpu_type="A", gpus=4, cpu_milli=0, mem_mib=0)])
    policy._per_type(state)
    assert policy.gpu_per_cpu.tolist() == [np.inf]
    stranded = policy.stranded(
        frag=np.array([250.0]),
        free=np.array([4000.0]),
        cpu=np.array([0.0]),
        mem=np.array([0.0]),
        types=np.array([0]),
    )
    assert stranded.tolist() == [250.0]
    assert policy.select(state, Shape(gpus=2), [0]) is not None


@settings(max_examples=60, deadline=None)
@given(
    mix=st.lists(TYPES, min_size=1, max_size=5, unique=True),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["assign", "release", "drain", "rollback"]),
            st.integers(0, 2),
            st.sampled_from([250, 500, 1000]),
        ),
        max_size=30,
    ),
)
def test_kept_homes_equal_a_full_count_after_any_changes(
    mix: list[TaskType], steps: list[tuple[str, int, int]]
) -> None:
    nodes = [
        Node(name="a", gpu_type="A", gpus=2, cpu_milli=8000, mem_mib=1000),
        Node(name="b", gpu_type="B", gpus=1, cpu_milli=4000, mem_mib=1000),
        Node(name="c", gpu_type="A", gpus=4, cpu_milli=2000, mem_mib=4000),
    ]
    state = ClusterState(nodes)
    kept = HomesCache(mix)
    checkpoint = state.checkpoint()
    for k, (op, n, milli) in enumerate(steps):
        node = nodes[n]
        if op == "assign":
            gpu = k % node.gpus
            if state.gpu_free[n][gpu] >= milli and state.cpu_free[n] >= 500:
                rp = ReplicaPlacement(node=node.name, gpu_indices=(gpu,), gpu_milli=milli)
                state.assign(f"j{k}", (replace(rp, cpu_milli=500),))
        elif op == "release" and state.holdings:
            state.release(sorted(state.holdings)[n % len(state.holdings)])
        elif op == "drain":
            state.set_schedulable(node.name, not state.schedulable[n])
        elif op == "rollback":
            state.rollback(checkpoint)
            checkpoint = state.checkpoint()
        assert kept.homes(state).tolist() == homes(state, mix).tolist()
