"""Invariants every placement policy keeps, on random clusters and job streams."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.core.models import GPU_MILLI, Job, Node, Shape, Topology
from mosu.engine.placement import place_job
from mosu.engine.policies import POLICIES, PolicyContext, TaskMix, make_placement
from mosu.engine.state import ClusterState

GPU_TYPES = ("A", "B")

nodes_st = st.lists(
    st.builds(
        lambda k, gpus, cpu, mem, t: Node(
            name=f"n{k}", gpu_type=t, gpus=gpus, cpu_milli=cpu, mem_mib=mem, rack=f"r{k % 2}"
        ),
        st.just(0),
        st.sampled_from([1, 2, 4, 8]),
        st.integers(4_000, 64_000),
        st.integers(8_000, 256_000),
        st.sampled_from(GPU_TYPES),
    ),
    min_size=1,
    max_size=6,
).map(lambda ns: [Node(**{**_fields(n), "name": f"n{k}"}) for k, n in enumerate(ns)])


def _fields(n: Node) -> dict:
    return {f: getattr(n, f) for f in Node.__slots__}


@st.composite
def jobs_st(draw: st.DrawFn) -> list[Job]:
    jobs = []
    for k in range(draw(st.integers(1, 12))):
        gpus = draw(st.sampled_from([0, 1, 1, 2, 4, 8]))
        milli = draw(st.sampled_from([100, 250, 500, 1000])) if gpus == 1 else GPU_MILLI
        shape = Shape(
            gpus=gpus,
            gpu_milli=milli if gpus else 0,
            cpu_milli=draw(st.integers(0, 16_000)),
            mem_mib=draw(st.integers(0, 64_000)),
        )
        replicas = 1 if shape.fractional else draw(st.sampled_from([1, 1, 2, 3]))
        jobs.append(
            Job(
                id=f"j{k}",
                tenant="t",
                shape=shape,
                replicas=replicas,
                gpu_types=draw(st.sampled_from([(), ("A",), ("B",)])),
                topology=draw(st.sampled_from(list(Topology))),
            )
        )
    return jobs


def run(nodes: list[Node], jobs: list[Job], policy: str, seed: int) -> list[tuple]:
    state = ClusterState(nodes)
    mix = TaskMix.observe((j.shape, j.gpu_types) for j in jobs)
    placer = make_placement(policy, PolicyContext(task_mix=mix, rng=random.Random(seed)))
    log = []
    for j in jobs:
        before = ([list(f) for f in state.gpu_free], list(state.cpu_free), list(state.mem_free))
        placement = place_job(state, j, placer)
        after = ([list(f) for f in state.gpu_free], list(state.cpu_free), list(state.mem_free))
        assert after == before, "place_job must not change the state"
        if placement is None:
            log.append((j.id, None))
            continue
        assert len(placement) == j.replicas, "a gang is placed whole or not at all"
        for rp in placement:
            node = nodes[state.index_of[rp.node]]
            assert j.allows(node.gpu_type)
            assert len(rp.gpu_indices) == j.shape.gpus
        if j.topology == Topology.SAME_NODE:
            assert len({rp.node for rp in placement}) == 1
        if j.topology == Topology.SAME_RACK:
            assert len({nodes[state.index_of[rp.node]].rack for rp in placement}) == 1
        state.assign(j.id, placement)
        for free in state.gpu_free:
            assert all(0 <= f <= GPU_MILLI for f in free)
        assert min(state.cpu_free) >= 0 and min(state.mem_free) >= 0
        log.append((j.id, tuple((rp.node, rp.gpu_indices) for rp in placement)))
    return log


@settings(max_examples=25, deadline=None)
@given(nodes=nodes_st, jobs=jobs_st(), seed=st.integers(0, 10))
def test_every_policy_keeps_capacity_and_gangs_whole(
    nodes: list[Node], jobs: list[Job], seed: int
) -> None:
    for policy in POLICIES:
        run(nodes, jobs, policy, seed)


@settings(max_examples=15, deadline=None)
@given(nodes=nodes_st, jobs=jobs_st(), seed=st.integers(0, 10))
def test_same_snapshot_and_seed_give_identical_decisions(
    nodes: list[Node], jobs: list[Job], seed: int
) -> None:
    for policy in POLICIES:
        assert repr(run(nodes, jobs, policy, seed)) == repr(run(nodes, jobs, policy, seed))


@st.composite
def alike_st(draw: st.DrawFn) -> tuple[list[Node], list[Job]]:
    """Racks of identical nodes and a stream of gangs, small jobs and departures: the
    gangs of whole nodes often choose among alike nodes, as large gangs do."""
    nodes = [
        Node(
            name=f"n{k}",
            gpu_type=GPU_TYPES[k % 2] if draw(st.booleans()) else "A",
            gpus=8,
            cpu_milli=64_000,
            mem_mib=256_000,
            rack=f"r{k % 3}",
        )
        for k in range(draw(st.integers(2, 14)))
    ]
    jobs = []
    for k in range(draw(st.integers(1, 14))):
        gpus = draw(st.sampled_from([1, 2, 4, 8, 8]))
        shape = Shape(
            gpus=gpus,
            cpu_milli=draw(st.sampled_from([0, 4_000, 40_000])),
            mem_mib=draw(st.sampled_from([0, 8_000])),
        )
        jobs.append(
            Job(
                id=f"j{k}",
                tenant="t",
                shape=shape,
                replicas=draw(st.integers(1, 6)),
                gpu_types=draw(st.sampled_from([(), ("A",), ("B",)])),
                topology=draw(st.sampled_from(list(Topology))),
            )
        )
    return nodes, jobs


@settings(max_examples=60, deadline=None)
@given(
    case=alike_st(),
    seed=st.integers(0, 5),
    ends=st.lists(st.integers(0, 13)),
    step=st.sampled_from([0.01, 0.1, 0.3]),
)
def test_mosu_places_gangs_of_alike_nodes_as_by_scoring_each_replica(
    case: tuple[list[Node], list[Job]], seed: int, ends: list[int], step: float
) -> None:
    # ``Mosu.alike`` lets a gang skip scoring nodes its ``select`` cannot tell apart:
    # every placement and what the policy keeps (its weights, where they were
    # weighed, each node's stranded GPU) are as with every replica scored. Coarser
    # reweighing steps than the default leave weights unchanged between some replicas.
    from mosu.engine.placement import mosu as mosu_module
    from mosu.engine.placement.mosu import Mosu

    nodes, jobs = case

    def trace(scored: bool) -> list[tuple]:
        state = ClusterState(nodes)
        mix = TaskMix.observe((j.shape, j.gpu_types) for j in jobs)
        placer = make_placement("mosu", PolicyContext(task_mix=mix, rng=random.Random(seed)))
        assert isinstance(placer, Mosu)
        if scored:
            placer.alike = lambda *args: None  # type: ignore[method-assign]
        log: list[tuple] = []
        for k, j in enumerate(jobs):
            placement = place_job(state, j, placer)
            mixes, weights, weighed = placer.fingerprint()  # type: ignore[misc]
            # Where the weights were weighed: the free GPU (the state differs by run).
            at = None if weighed is None else weighed[1]
            if placement is not None:
                state.assign(j.id, placement)
            if k in ends and f"j{ends.index(k)}" in state.holdings:
                state.release(f"j{ends.index(k)}")
            # A node's stranded GPU is brought up to date by the next ``select``.
            placer.select(state, Shape(gpus=1), state.candidate_array(Shape(gpus=1)))
            log.append((placement, mixes, weights, at, placer._before.round(9).tolist()))
        return log

    default = mosu_module.REWEIGH_STEP
    mosu_module.REWEIGH_STEP = step
    try:
        assert trace(scored=False) == trace(scored=True)
    finally:
        mosu_module.REWEIGH_STEP = default
