"""Every executor declares what it does beyond the protocol; the service reads the
declaration (``node_source``), never looks for a method."""

from __future__ import annotations

import pytest

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.executors.ray_executor import RayExecutor
from mosu.agent.executors.simulated import SimulatedExecutor
from mosu.core.executor import (
    Capability,
    DiscoversNodes,
    Executor,
    ReportsCheckpoints,
    checkpoint_source,
    node_source,
)
from mosu.core.models import Node

EXECUTORS = [LocalExecutor, RayExecutor, SimulatedExecutor]
NODES = [Node(name="n0", gpu_type="H800", gpus=8, cpu_milli=64000, mem_mib=1 << 20)]


@pytest.mark.parametrize("cls", EXECUTORS, ids=lambda c: c.__name__)
def test_a_declared_capability_comes_with_its_methods_and_only_then(cls: type) -> None:
    declared = cls.capabilities
    assert isinstance(declared, frozenset)
    assert (Capability.DISCOVERS_NODES in declared) == callable(getattr(cls, "cluster_nodes", None))
    reports = all(callable(getattr(cls, m, None)) for m in ("checkpoints", "request_checkpoint"))
    assert (Capability.CHECKPOINTS in declared) == reports
    for method in ("start", "poll", "stop", "adopt", "detach", "shutdown"):
        assert callable(getattr(cls, method)), method


def test_which_executors_discover_nodes() -> None:
    assert {c.__name__ for c in EXECUTORS if Capability.DISCOVERS_NODES in c.capabilities} == {
        "RayExecutor",
        "SimulatedExecutor",
    }


def test_node_source_follows_the_declaration() -> None:
    simulated = SimulatedExecutor(NODES)
    assert isinstance(simulated, Executor)
    assert node_source(simulated) is simulated
    assert [r.node.name for r in simulated.cluster_nodes()] == ["n0"]

    class Undeclared(SimulatedExecutor):
        capabilities = frozenset()

    # It has the method, but did not declare it: the store keeps its registered nodes.
    assert isinstance(Undeclared(NODES), DiscoversNodes)
    assert node_source(Undeclared(NODES)) is None


def test_a_declaration_without_its_method_is_refused() -> None:
    class Claims:
        capabilities = frozenset({Capability.DISCOVERS_NODES})
        sandbox = "none"

    with pytest.raises(TypeError, match="declares discovers-nodes but has no cluster_nodes"):
        node_source(Claims())  # type: ignore[arg-type]


def test_every_executor_reports_checkpoints_and_the_source_follows_the_declaration() -> None:
    assert all(Capability.CHECKPOINTS in c.capabilities for c in EXECUTORS)
    simulated = SimulatedExecutor(NODES)
    assert checkpoint_source(simulated) is simulated

    class Undeclared(SimulatedExecutor):
        capabilities = frozenset({Capability.DISCOVERS_NODES})

    assert isinstance(Undeclared(NODES), ReportsCheckpoints)
    assert checkpoint_source(Undeclared(NODES)) is None

    class Claims:
        capabilities = frozenset({Capability.CHECKPOINTS})
        sandbox = "none"

    with pytest.raises(TypeError, match="declares checkpoints but cannot report checkpoints"):
        checkpoint_source(Claims())  # type: ignore[arg-type]
