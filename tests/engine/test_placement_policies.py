"""Table-style checks of every registered policy's node and GPU choice."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from mosu.core.models import Job, Node, ReplicaPlacement
from mosu.engine.placement import place_job
from mosu.engine.policies import POLICIES, PolicyContext, TaskMix, make_placement
from mosu.engine.state import ClusterState
from tests.engine.helpers import job, node

NO_FIT = "no node fits"


@dataclass
class Case:
    name: str
    policy: str
    nodes: list[Node]
    job: Job
    held: dict[str, tuple[str, tuple[int, ...], int, int]] = field(default_factory=dict)
    mix: list[Job] = field(default_factory=list)
    want_node: str | None = None
    want_gpus: tuple[int, ...] = ()
    want_reason: str | None = None


def cpu_node(name: str, gpus: int, cpu: int, gpu_type: str = "A100") -> Node:
    return node(name, gpus, cpu=cpu, gpu_type=gpu_type)


CASES = [
    Case(
        "bestfit takes the node left with the least CPU and GPU",
        "bestfit",
        [node("big", 8, cpu=96_000), node("small", 2, cpu=16_000), node("mid", 4, cpu=32_000)],
        job("j", 1, cpu=4000),
        want_node="small",
        want_gpus=(0,),
    ),
    Case(
        "dotprod takes the node whose free vector is least aligned with the request",
        "dotprod",
        [node("cpu-rich", 2, cpu=96_000), node("gpu-rich", 8, cpu=8_000)],
        job("j", 1, cpu=8000),
        want_node="cpu-rich",
        want_gpus=(0,),
    ),
    Case(
        "packing puts a share on the fullest partly used GPU",
        "packing",
        [node("n0", 2), node("n1", 2), node("n2", 2)],
        job("j", 0.3),
        held={"a": ("n1", (1,), 500, 0), "b": ("n2", (0,), 200, 0)},
        want_node="n1",
        want_gpus=(1,),
    ),
    Case(
        "packing prefers free GPUs of a used node over an idle node",
        "packing",
        [node("idle", 8), node("used", 8)],
        job("j", 1),
        held={"a": ("used", (0,), 1000, 0)},
        want_node="used",
        want_gpus=(1,),
    ),
    Case(
        "clustering joins a node that holds only the same kind of task",
        "clustering",
        [node("shares", 4), node("wholes", 4), node("mixed", 4)],
        job("j", 1),
        held={
            "a": ("shares", (0,), 500, 0),
            "b": ("wholes", (0,), 1000, 0),
            "c": ("mixed", (0,), 1000, 0),
            "d": ("mixed", (1,), 500, 0),
        },
        want_node="wholes",
        want_gpus=(1,),
    ),
    Case(
        "fgd keeps whole GPUs whole when a partly used GPU can take the share",
        "fgd",
        [node("fresh", 2), node("half", 2)],
        job("j", 0.5),
        held={"a": ("half", (1,), 500, 0)},
        mix=[job("m1", 1), job("m2", 0.5)],
        want_node="half",
        want_gpus=(1,),
    ),
    Case(
        "mosu keeps whole GPUs whole when a partly used GPU can take the share",
        "mosu",
        [node("fresh", 2), node("half", 2)],
        job("j", 0.5),
        held={"a": ("half", (1,), 500, 0)},
        mix=[job("m1", 1), job("m2", 0.5)],
        want_node="half",
        want_gpus=(1,),
    ),
    Case(
        "mosu sends a CPU-only task to the node with CPU to spare, not to GPUs it would strand",
        "mosu",
        [cpu_node("gpu-heavy", 8, cpu=64_000), cpu_node("cpu-heavy", 2, cpu=96_000)],
        job("j", 0, cpu=32_000),
        mix=[job("m1", 1, cpu=8000), job("m2", 0, cpu=32_000)],
        want_node="cpu-heavy",
    ),
    Case(
        "mosu puts a GPU task where its CPU need leaves the others fed",
        "mosu",
        [cpu_node("tight", 4, cpu=16_000), cpu_node("roomy", 4, cpu=64_000)],
        job("j", 1, cpu=12_000),
        mix=[job("m1", 1, cpu=4000)],
        want_node="roomy",
        want_gpus=(0,),
    ),
    *[
        Case(
            f"{p} leaves a job that fits nowhere pending",
            p,
            [node("n0", 2), node("n1", 2)],
            job("j", 4),
            want_reason=NO_FIT,
        )
        for p in POLICIES
    ],
    *[
        Case(
            f"{p} honours the GPU types a job accepts",
            p,
            [node("a", 8, gpu_type="A100"), node("t", 2, gpu_type="T4")],
            job("j", 1, gpu_types=("T4",)),
            want_node="t",
            want_gpus=(0,),
        )
        for p in POLICIES
    ],
    *[
        Case(
            f"{p} places a gang on one node when one node holds it all",
            p,
            [node("n0", 8), node("n1", 2)],
            job("j", 2, replicas=4),
            want_node="n0",
            want_gpus=(0, 1, 2, 3, 4, 5, 6, 7),
        )
        for p in POLICIES
    ],
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_places_as_expected(case: Case) -> None:
    state = ClusterState(case.nodes)
    for job_id, (name, gpus, milli, cpu) in case.held.items():
        state.assign(job_id, (ReplicaPlacement(name, gpus, milli, cpu_milli=cpu),))
    state.commit()
    mix = TaskMix.observe((j.shape, j.gpu_types) for j in [*case.mix, case.job])
    policy = make_placement(case.policy, PolicyContext(task_mix=mix, rng=random.Random(1)))
    placement = place_job(state, case.job, policy)
    if case.want_reason == NO_FIT:
        assert placement is None
        return
    assert placement is not None
    assert {rp.node for rp in placement} == {case.want_node}
    assert tuple(g for rp in placement for g in rp.gpu_indices) == case.want_gpus


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(Exception, match=r"unknown placement 'nope'; choose one of: random"):
        make_placement("nope", PolicyContext())


def test_the_registry_holds_every_published_policy_and_mosu() -> None:
    assert list(POLICIES) == [
        "random",
        "dotprod",
        "clustering",
        "packing",
        "bestfit",
        "fgd",
        "mosu",
        "tightest",
    ]
