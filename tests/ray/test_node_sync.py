"""Mirroring the nodes an executor discovers (as the Ray executor does) into the store.

No Ray here: a fake executor reports the nodes; the scheduling loop is real.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mosu.core.accelerators import Vendor
from mosu.core.executor import Capability, NodeReport
from mosu.core.models import Node, NodeState
from mosu.service.app import create_app
from mosu.service.platform import Platform
from mosu.service.settings import Settings
from tests.service.conftest import OPERATOR_TOKEN, FakeExecutor, bearer, submit

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

W0 = Node(name="w0", gpu_type="H800", gpus=4, cpu_milli=8000, mem_mib=65536, rack="r0")
W1 = Node(name="w1", gpu_type="H800", gpus=4, cpu_milli=8000, mem_mib=65536, rack="r1")


class DiscoveringExecutor(FakeExecutor):
    capabilities = frozenset({Capability.DISCOVERS_NODES})

    def __init__(self) -> None:
        super().__init__()
        self.nodes = [W0, W1]
        self.vendors: dict[str, Vendor] = {}

    def cluster_nodes(self) -> list[NodeReport]:
        return [
            NodeReport(node=n, sandbox="users", vendor=self.vendors.get(n.name)) for n in self.nodes
        ]


@pytest.fixture
def executor() -> DiscoveringExecutor:
    return DiscoveringExecutor()


@pytest.fixture
def platform(tmp_path: Path, executor: DiscoveringExecutor) -> Iterator[Platform]:
    settings = Settings(
        data_dir=tmp_path / "data",
        operator_token=OPERATOR_TOKEN,
        grace_s=0.1,
        min_runtime_s=0,
        tick_s=0.0,  # mirror the nodes on every iteration
    )
    p = Platform(settings, executor)
    p.open()
    yield p
    p.close()


@pytest.fixture
def api(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform), raise_server_exceptions=True) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
        yield client


def _nodes(api: TestClient) -> dict[str, tuple[str, int, str]]:
    return {n["name"]: (n["state"], n["gpus"], n["rack"]) for n in api.get("/v1/nodes").json()}


def _job(api: TestClient, job_id: int) -> dict:
    return api.get(f"/v1/jobs/{job_id}").json()


def _tenant(api: TestClient) -> str:
    r = api.post("/v1/tenants", json={"name": "a", "quotas": {"H800": {"guaranteed": 8}}})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_discovered_nodes_are_registered_with_their_capacity(api, platform) -> None:
    platform.loop.run_once()
    assert {n["name"]: n["sandbox"] for n in api.get("/v1/nodes").json()} == {
        "w0": "users",
        "w1": "users",
    }
    assert _nodes(api) == {"w0": ("ready", 4, "r0"), "w1": ("ready", 4, "r1")}


@pytest.mark.parametrize(
    ("change", "want_w0"),
    [
        ({}, ("ready", 4, "r0")),
        ({"gpus": 8}, ("ready", 8, "r0")),
        ({"rack": "r9"}, ("ready", 4, "r9")),
        ({"state": NodeState.DOWN}, ("down", 4, "r0")),
    ],
    ids=["as it was", "more GPUs", "another rack", "reported down"],
)
def test_a_mirrored_node_follows_what_the_cluster_reports_next(
    api, platform, executor: DiscoveringExecutor, change: dict, want_w0: tuple
) -> None:
    platform.loop.run_once()
    executor.nodes = [replace(W0, **change), W1]
    platform.loop.run_once()
    assert _nodes(api) == {"w0": want_w0, "w1": ("ready", 4, "r1")}


def test_mirrored_nodes_carry_their_vendor_to_the_store_and_each_launch(
    api, platform, executor: DiscoveringExecutor
) -> None:
    npu = Node(name="npu-0", gpu_type="npu", gpus=8, cpu_milli=8000, mem_mib=65536)
    mi = Node(name="mi-0", gpu_type="MI300X", gpus=8, cpu_milli=8000, mem_mib=65536)
    executor.nodes = [W0, npu, mi]
    executor.vendors = {"npu-0": Vendor.HUAWEI}  # Ray's NPU resource; MI300X from the table
    platform.loop.run_once()
    listed = {n["name"]: (n["gpu_type"], n["vendor"]) for n in api.get("/v1/nodes").json()}
    assert listed == {
        "w0": ("H800", "nvidia"),
        "npu-0": ("npu", "huawei"),
        "mi-0": ("MI300X", "amd"),
    }
    r = api.post("/v1/tenants", json={"name": "a", "quotas": {"*": {"guaranteed": 24}}})
    token = r.json()["token"]
    job = submit(api, token, gpus=8, gpu_type="npu")
    platform.loop.run_once()
    assert [(r.node, r.vendor) for r in executor.launched[job["id"]].replicas] == [
        ("npu-0", "huawei")
    ]


def test_gang_on_a_node_that_died_is_stopped_and_requeued_then_runs_when_it_returns(
    api, platform, executor: DiscoveringExecutor
) -> None:
    platform.loop.run_once()
    token = _tenant(api)
    job = submit(api, token, replicas=2, gpus=4)
    platform.loop.run_once()
    assert _job(api, job["id"])["state"] == "running"
    assert sorted(r.node for r in executor.launched[job["id"]].replicas) == ["w0", "w1"]

    executor.nodes = [W0, replace(W1, state=NodeState.DOWN)]
    platform.loop.run_once()

    assert _nodes(api)["w1"][0] == "down"
    assert executor.stopped == [job["id"]]
    executor.exit(job["id"], None)  # the stopped gang's exit
    platform.loop.run_once()
    got = _job(api, job["id"])
    assert (got["state"], got["attempts"]) == ("pending", 1)
    events = api.get(f"/v1/jobs/{job['id']}/events", headers=bearer(token)).json()["events"]
    assert ("stop-requested", "node-down") in [(e["kind"], e["reason"]) for e in events]
    assert [e["to_state"] for e in events if e["kind"] == "state"][-2:] == ["preempted", "pending"]

    executor.nodes = [W0, W1]
    platform.loop.run_once()
    platform.loop.run_once()
    assert _nodes(api)["w1"][0] == "ready"
    got = _job(api, job["id"])
    assert (got["state"], got["attempts"]) == ("running", 2)


def test_node_missing_from_the_cluster_is_down_and_a_drain_survives_its_return(
    api, platform, executor: DiscoveringExecutor
) -> None:
    platform.loop.run_once()
    assert api.post("/v1/nodes/w0/drain").status_code == 200

    executor.nodes = [W0]
    platform.loop.run_once()
    assert {k: v[0] for k, v in _nodes(api).items()} == {"w0": "draining", "w1": "down"}

    executor.nodes = [replace(W0, gpus=8), W1]
    platform.loop.run_once()
    assert _nodes(api) == {"w0": ("draining", 8, "r0"), "w1": ("ready", 4, "r1")}
