from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from mosu.core.models import Job, Node, ReplicaPlacement, Shape, Topology
from mosu.engine.cycle.reservations import Avoiding
from mosu.engine.placement import place_job
from mosu.engine.placement.base import Candidates, fits_quietly, fits_unsearched
from mosu.engine.placement.bestfit import BestFit
from mosu.engine.placement.randomfit import RandomFit
from mosu.engine.policies import PolicyContext, TaskMix, make_placement
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node


@dataclass
class Case:
    name: str
    nodes: list[Node]
    job: Job
    held: dict[str, tuple[str, tuple[int, ...], int]] = field(default_factory=dict)
    want: list[tuple[str, tuple[int, ...]]] | None = None


CASES = [
    Case(
        "a single GPU goes to the fullest node that fits",
        [node("n0", 8), node("n1", 2)],
        job("j", 1),
        want=[("n1", (0,))],
    ),
    Case(
        "a gang that fits one node stays on one node",
        [node("n0", 8), node("n1", 8)],
        job("j", 2, replicas=3),
        want=[("n0", (0, 1)), ("n0", (2, 3)), ("n0", (4, 5))],
    ),
    Case(
        "same-rack keeps replicas inside one rack",
        [node("a0", 4, rack="ra"), node("b0", 4, rack="rb"), node("b1", 4, rack="rb")],
        job("j", 4, replicas=2, topology=Topology.SAME_RACK),
        want=[("b0", (0, 1, 2, 3)), ("b1", (0, 1, 2, 3))],
    ),
    Case(
        "same-node refuses to spread",
        [node("n0", 4), node("n1", 4)],
        job("j", 4, replicas=2, topology=Topology.SAME_NODE),
        want=None,
    ),
    Case(
        "a gang that cannot be completed gets nothing",
        [node("n0", 4), node("n1", 4)],
        job("j", 4, replicas=3),
        want=None,
    ),
    Case(
        "GPU-type constraint limits the nodes",
        [node("n0", 8, gpu_type="T4"), node("n1", 8)],
        job("j", 1, gpu_types=("T4",)),
        want=[("n0", (0,))],
    ),
    Case(
        "a fraction goes to the tightest partly used GPU",
        [node("n0", 2), node("n1", 2)],
        job("j", 0.3),
        held={"x": ("n1", (1,), 600)},
        want=[("n1", (1,))],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_place_job(case: Case) -> None:
    state = ClusterState(case.nodes)
    for job_id, (name, gpus, milli) in case.held.items():
        state.assign(job_id, (ReplicaPlacement(name, gpus, milli),))
    before = [list(f) for f in state.gpu_free]
    placement = place_job(state, case.job, BestFit())
    got = None if placement is None else [(rp.node, rp.gpu_indices) for rp in placement]
    assert got == case.want
    assert state.gpu_free == before, "place_job must leave the state unchanged"


class Counting(BestFit):
    """Best fit that counts its ``select`` calls."""

    def __init__(self) -> None:
        self.calls = 0

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        self.calls += 1
        return super().select(state, shape, candidates)


def test_a_gang_the_free_slots_cannot_hold_is_refused_without_a_search() -> None:
    # 3 + 3 free whole GPUs, replicas of 2 GPUs: one slot per node, 2 in all.
    state = ClusterState([node("n0", 4), node("n1", 4)])
    state.assign("x", (ReplicaPlacement("n0", (0,), 1000), ReplicaPlacement("n1", (0,), 1000)))
    policy = Counting()
    assert place_job(state, job("g", 2, replicas=3), policy) is None
    assert policy.calls == 0
    # CPU bounds the slots too: 2 replicas fit by GPU, not by CPU.
    cpu_bound = ClusterState([node("n0", 8, cpu=1_000), node("n1", 8, cpu=1_000)])
    assert place_job(cpu_bound, job("c", 1, replicas=3, cpu=600), policy) is None
    assert policy.calls == 0
    assert place_job(state, job("ok", 2, replicas=2), policy) is not None
    assert policy.calls == 2


def test_a_gang_placed_again_on_an_equal_state_is_answered_without_a_search() -> None:
    state = ClusterState([node("n0", 8), node("n1", 8)])
    policy = Counting()
    first = place_job(state, job("g", 4, replicas=3), policy)
    calls = policy.calls
    assert first is not None and calls > 0
    # Taken and given back: the same free capacity, so the same answer.
    state.assign("y", (ReplicaPlacement("n1", (0, 1), 1000),))
    state.release("y")
    assert place_job(state, job("h", 4, replicas=3), policy) == first
    assert policy.calls == calls
    # A different state is searched.
    state.assign("z", (ReplicaPlacement("n0", (0,), 1000),))
    place_job(state, job("g", 4, replicas=3), policy)
    assert policy.calls > calls


@pytest.mark.parametrize("seed", range(20))
def test_fits_unsearched_agrees_with_the_search_whenever_it_answers(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [
        node(f"n{i}", rng.choice((4, 8)), gpu_type=rng.choice(("A100", "H800")), cpu=8_000)
        for i in range(6)
    ]
    state = ClusterState(nodes)
    for k, n in enumerate(nodes):
        used = rng.randrange(n.gpus + 1)
        if used:
            state.assign(f"x{k}", (ReplicaPlacement(n.name, tuple(range(used)), 1000, 1_000),))
    answered = 0
    for _ in range(30):
        gang = job(
            "g",
            rng.choice((1, 2, 4)),
            replicas=rng.randrange(1, 9),
            cpu=rng.choice((0, 1_000, 3_000)),
            gpu_types=rng.choice(((), ("A100",), ("H800",))),
            topology=rng.choice((Topology.NONE, Topology.SAME_NODE)),
        )
        for policy in (BestFit(), RandomFit(random.Random(seed))):
            known = fits_unsearched(state, gang, policy)
            if known is not None:
                answered += 1
                assert known == (place_job(state, gang, policy) is not None), gang
            # As if some holders were gone: the same answer as releasing them.
            gone = rng.sample(sorted(state.holdings), k=min(2, len(state.holdings)))
            known = fits_unsearched(state, gang, policy, [state.holdings[k] for k in gone])
            cp = state.checkpoint()
            for k in gone:
                state.release(k)
            if known is not None:
                assert known == (place_job(state, gang, policy) is not None), (gang, gone)
            state.rollback(cp)
    assert answered > 0


@pytest.mark.parametrize("seed", range(20))
def test_fits_quietly_agrees_with_the_search_and_leaves_it_nothing_to_change(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [node(f"n{i}", rng.choice((4, 8)), cpu=8_000) for i in range(8)]
    state = ClusterState(nodes)
    for k, n in enumerate(nodes):
        used = rng.randrange(n.gpus + 1)
        if used:
            state.assign(f"x{k}", (ReplicaPlacement(n.name, tuple(range(used)), 1000, 1_000),))
    mix = TaskMix.observe([(Shape(1), ()), (Shape(4), ()), (Shape(8), ())])
    policy = make_placement("mosu", PolicyContext(task_mix=mix, rng=random.Random(seed)))
    answered = settled = 0
    for _ in range(30):
        gang = job(
            "g",
            rng.choice((1, 2, 4)),
            replicas=rng.randrange(1, 6),
            cpu=rng.choice((0, 1_000, 3_000)),
        )
        avoid = frozenset(rng.sample(range(len(nodes)), k=rng.randrange(4)))
        before = policy.fingerprint()
        known = fits_quietly(state, gang, policy, sorted(avoid))
        if known is None:
            place_job(state, gang, Avoiding(policy, avoid))
            continue
        answered += 1
        settled += policy.fingerprint() != before
        # What the search would change in the policy was changed already.
        after = policy.fingerprint()
        assert known == (place_job(state, gang, Avoiding(policy, avoid)) is not None), gang
        assert policy.fingerprint() == after
        # A start moves the free capacity, so later gangs find the policy to reweigh.
        if known and rng.random() < 0.5:
            placement = place_job(state, gang, Avoiding(policy, avoid))
            assert placement is not None
            state.assign(f"s{answered}", placement)
    assert answered > 0 and settled > 0
