"""Every executor declares what it does beyond the protocol; the service reads the
declaration (``node_source``), never looks for a method."""

from __future__ import annotations

import pytest

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.executors.ray_executor import RayExecutor
from mosu.agent.executors.simulated import SimulatedExecutor
from mosu.core.executor import Capability, DiscoversNodes, Executor, node_source
from mosu.core.models import Node

EXECUTORS = [LocalExecutor, RayExecutor, SimulatedExecutor]
NODES = [Node(name="n0", gpu_type="H800", gpus=8, cpu_milli=64000, mem_mib=1 << 20)]


@pytest.mark.parametrize("cls", EXECUTORS, ids=lambda c: c.__name__)
def test_a_declared_capability_comes_with_its_methods_and_only_then(cls: type) -> None:
    declared = cls.capabilities
    assert isinstance(declared, frozenset)
    assert (Capability.DISCOVERS_NODES in declared) == callable(getattr(cls, "cluster_nodes", None))
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
