"""The fragmentation measure behind fgd and mosu, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from mosu.engine.placement.frag import FragTable
from mosu.engine.placement.taskmix import TaskMix, TaskType

WHOLE = TaskType(cpu_milli=4000, mem_mib=0, gpus=1, gpu_milli=1000)
HALF = TaskType(cpu_milli=2000, mem_mib=0, gpus=1, gpu_milli=500)
PAIR_T4 = TaskType(cpu_milli=8000, mem_mib=0, gpus=2, gpu_milli=1000, gpu_types=("T4",))
CPU_ONLY = TaskType(cpu_milli=1000, mem_mib=0, gpus=0, gpu_milli=0)


def frag(mix, gpu_type, frees, cpu):
    table = FragTable(mix)
    sid = table.state_id((gpu_type, tuple(sorted(frees, reverse=True))))
    return float(table.frag(np.array([sid]), np.array([cpu]))[0])


@pytest.mark.parametrize(
    ("name", "mix", "gpu_type", "frees", "cpu", "want"),
    [
        (
            "a whole free GPU is usable by every GPU task",
            [(WHOLE, 0.5), (HALF, 0.5)],
            "A",
            (1000,),
            10_000,
            0.0,
        ),
        (
            "a 300 share is a fragment for both a whole GPU and a half",
            [(WHOLE, 0.5), (HALF, 0.5)],
            "A",
            (1000, 300),
            10_000,
            300.0,
        ),
        (
            "a 600 share is a fragment only for whole-GPU tasks",
            [(WHOLE, 0.5), (HALF, 0.5)],
            "A",
            (600,),
            10_000,
            300.0,
        ),
        (
            "too little CPU for a task makes all free GPU a fragment for it",
            [(WHOLE, 0.5), (HALF, 0.5)],
            "A",
            (1000,),
            3000,
            500.0,
        ),
        (
            "a task that does not accept the GPU type sees it all as fragment",
            [(WHOLE, 0.5), (PAIR_T4, 0.5)],
            "A",
            (1000, 1000),
            10_000,
            1000.0,
        ),
        (
            "the same task fits a node of its GPU type",
            [(WHOLE, 0.5), (PAIR_T4, 0.5)],
            "T4",
            (1000, 1000),
            10_000,
            0.0,
        ),
        (
            "a CPU-only task can never use a GPU",
            [(WHOLE, 0.75), (CPU_ONLY, 0.25)],
            "A",
            (1000, 1000),
            10_000,
            500.0,
        ),
        ("a full node has nothing to fragment", [(WHOLE, 1.0)], "A", (0, 0), 0, 0.0),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_fragmentation_of_a_node(name, mix, gpu_type, frees, cpu, want) -> None:
    assert frag(mix, gpu_type, frees, cpu) == pytest.approx(want)


def test_placing_a_share_offers_one_state_per_distinct_free_share() -> None:
    table = FragTable([(HALF, 1.0)])
    sid = table.state_id(("A", (1000, 1000, 600, 600)))
    options = table.after_share(sid, 500)
    assert sorted(table.key(s)[1] for s, _ in options) == [
        (1000, 600, 600, 500),
        (1000, 1000, 600, 100),
    ]
    rows = table.after_many(np.array([sid, sid]), 1, 500)
    assert rows.shape == (2, 2) and set(rows[0].tolist()) == {s for s, _ in options}


def test_popular_mix_keeps_the_most_frequent_types_and_renormalises() -> None:
    from mosu.core.models import Shape

    shapes = [Shape(gpus=1)] * 90 + [Shape(gpus=1, gpu_milli=500)] * 8 + [Shape(gpus=8)] * 2
    mix = TaskMix.observe((s, ()) for s in shapes)
    popular = mix.popular(0.95)
    assert [(t.gpus, t.gpu_milli) for t, _ in popular] == [(1, 1000), (1, 500)]
    assert sum(w for _, w in popular) == pytest.approx(1.0)
    demand = dict(((t.gpus, t.gpu_milli), w) for t, w in mix.by_demand())
    assert demand[(8, 1000)] == pytest.approx(16 / 110)
