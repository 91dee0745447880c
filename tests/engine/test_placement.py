from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mosu.core.models import Job, Node, ReplicaPlacement, Topology
from mosu.engine.placement import place_job
from mosu.engine.placement.bestfit import BestFit
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
