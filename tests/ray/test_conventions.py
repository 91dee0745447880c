"""The Ray node convention, the replica env contract and exit reports: no cluster needed."""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mosu.agent.executors.ray_executor import (
    RayGangs,
    ReplicaState,
    ReplicaStatus,
    _device_request,
    _exit_report,
    node_from_ray,
)
from mosu.core.accelerators import Vendor
from mosu.core.errors import InvalidInput, PlatformError
from mosu.core.models import NodeState, ReplicaPlacement

NODE_ID = "ab12cd34ef56" + "0" * 44


def ray_node(
    *,
    resources: dict[str, float] | None = None,
    labels: dict[str, str] | None = None,
    alive: bool = True,
) -> dict[str, Any]:
    return {
        "NodeID": NODE_ID,
        "Alive": alive,
        "NodeManagerAddress": "10.0.0.7",
        "Resources": {"CPU": 16.0, "memory": 64.0 * 2**30, **(resources or {})},
        "Labels": {"ray.io/node-id": NODE_ID, **(labels or {})},
    }


@dataclass(frozen=True)
class NodeCase:
    name: str
    info: dict[str, Any]
    want_name: str = f"ray-{NODE_ID[:12]}"
    want_gpus: int = 8
    want_gpu_type: str = "gpu"
    want_zone: str = "zone-0"
    want_rack: str = "rack-0"
    want_state: NodeState = NodeState.READY
    want_labels: tuple[tuple[str, str], ...] = field(default=())


NODE_CASES = [
    NodeCase(
        "labels name the node, its GPU type and its place",
        ray_node(
            resources={"GPU": 8},
            labels={
                "mosu.io/node": "gpu-17",
                "mosu.io/gpu-type": "H800",
                "mosu.io/zone": "hall-a",
                "mosu.io/rack": "r03",
            },
        ),
        want_name="gpu-17",
        want_gpu_type="H800",
        want_zone="hall-a",
        want_rack="r03",
        want_labels=(
            ("mosu.io/gpu-type", "H800"),
            ("mosu.io/node", "gpu-17"),
            ("mosu.io/rack", "r03"),
            ("mosu.io/zone", "hall-a"),
        ),
    ),
    NodeCase(
        "custom resources stand in for labels",
        ray_node(
            resources={"GPU": 8, "mosu-gpu-type:A100": 8, "mosu-zone:z1": 1, "mosu-rack:r9": 1}
        ),
        want_gpu_type="A100",
        want_zone="z1",
        want_rack="r9",
    ),
    NodeCase(
        "a label wins over a custom resource",
        ray_node(
            resources={"GPU": 8, "mosu-gpu-type:A100": 8}, labels={"mosu.io/gpu-type": "H100"}
        ),
        want_gpu_type="H100",
        want_labels=(("mosu.io/gpu-type", "H100"),),
    ),
    NodeCase(
        "Ray's own accelerator type is the last resort before the default",
        ray_node(resources={"GPU": 4, "accelerator_type:L40S": 1}),
        want_gpus=4,
        want_gpu_type="L40S",
    ),
    NodeCase(
        "a head node with GPUs is offered like any other",
        ray_node(resources={"GPU": 2, "node:__internal_head__": 1}),
        want_gpus=2,
    ),
    NodeCase(
        "a dead node is down",
        ray_node(resources={"GPU": 8}, alive=False),
        want_state=NodeState.DOWN,
    ),
]


@pytest.mark.parametrize("case", NODE_CASES, ids=lambda c: c.name)
def test_ray_node_becomes_a_mosu_node(case: NodeCase) -> None:
    found = node_from_ray(case.info, default_gpu_type="gpu")

    assert found is not None
    node = found.node
    assert (node.name, node.gpus, node.gpu_type, node.zone, node.rack, node.state) == (
        case.want_name,
        case.want_gpus,
        case.want_gpu_type,
        case.want_zone,
        case.want_rack,
        case.want_state,
    )
    assert (node.cpu_milli, node.mem_mib) == (16_000, 64 * 1024)
    assert node.labels == case.want_labels
    assert (found.node_id, found.address) == (NODE_ID, "10.0.0.7")


def test_gpu_less_head_node_is_not_offered_to_jobs() -> None:
    info = ray_node(resources={"node:__internal_head__": 1})
    assert node_from_ray(info, default_gpu_type="gpu") is None


def test_gpu_less_worker_is_a_cpu_node() -> None:
    found = node_from_ray(ray_node(), default_gpu_type="gpu")
    assert found is not None and found.node.gpus == 0


@pytest.mark.parametrize(
    ("resources", "labels", "want"),
    [
        pytest.param(
            {"NPU": 8, "accelerator_type:Ascend910B": 1},
            {},
            (8, "Ascend910B", Vendor.HUAWEI, "NPU"),
            id="Ray's NPU resource is an Ascend node's count",
        ),
        pytest.param(
            {"NPU": 16},
            {},
            (16, "npu", Vendor.HUAWEI, "NPU"),
            id="NPUs of no stated type",
        ),
        pytest.param(
            {"NPU": 8},
            {"mosu.io/gpu-type": "Ascend910B3"},
            (8, "Ascend910B3", Vendor.HUAWEI, "NPU"),
            id="a label names the NPU model",
        ),
        pytest.param(
            {"GPU": 8, "accelerator_type:AMD-Instinct-MI300X-OAM": 1},
            {},
            (8, "MI300X", Vendor.AMD, "GPU"),
            id="Ray's AMD accelerator type read as the model",
        ),
        pytest.param(
            {"GPU": 8, "accelerator_type:H800": 1},
            {},
            (8, "H800", Vendor.NVIDIA, "GPU"),
            id="NVIDIA from its accelerator type",
        ),
        pytest.param(
            {"GPU": 4},
            {"mosu.io/gpu-type": "MLU370-X8", "mosu.io/gpu-vendor": "cambricon"},
            (4, "MLU370-X8", Vendor.CAMBRICON, "GPU"),
            id="a vendor label for one Ray has no manager for",
        ),
        pytest.param(
            {"GPU": 8, "NPU": 8},
            {},
            (8, "gpu", Vendor.NVIDIA, "GPU"),
            id="GPUs and NPUs on one Ray node: its GPUs",
        ),
    ],
)
def test_a_ray_node_s_vendor_and_device_count(resources, labels, want) -> None:
    found = node_from_ray(ray_node(resources=resources, labels=labels), default_gpu_type="gpu")
    assert found is not None
    got = (found.node.gpus, found.node.gpu_type, found.vendor, found.device_resource)
    assert got == want


def test_a_vendor_label_that_contradicts_the_type_names_the_label() -> None:
    info = ray_node(resources={"NPU": 8}, labels={"mosu.io/gpu-type": "H800"})
    with pytest.raises(InvalidInput, match="H800 is made by nvidia, not huawei") as err:
        node_from_ray(info, default_gpu_type="gpu")
    assert err.value.field == "mosu.io/gpu-vendor"


def test_a_runner_asks_ray_for_the_devices_its_replica_holds() -> None:
    npu = node_from_ray(ray_node(resources={"NPU": 8}), default_gpu_type="gpu")
    gpu = node_from_ray(ray_node(resources={"GPU": 8}), default_gpu_type="gpu")
    mlu = node_from_ray(
        ray_node(resources={"GPU": 8}, labels={"mosu.io/gpu-vendor": "cambricon"}),
        default_gpu_type="mlu",
    )
    assert npu is not None and gpu is not None and mlu is not None
    assert _device_request(npu, ReplicaPlacement("n", (2, 3))) == {
        "num_gpus": 0,
        "resources": {"NPU": 2},
    }
    assert _device_request(gpu, ReplicaPlacement("n", (5,), gpu_milli=500)) == {"num_gpus": 0.5}
    assert _device_request(gpu, ReplicaPlacement("n", (0, 1, 2, 3))) == {"num_gpus": 4}
    assert _device_request(gpu, ReplicaPlacement("n", ())) == {"num_gpus": 0}
    assert _device_request(mlu, ReplicaPlacement("n", (0,))) == {"num_gpus": 0}


def test_bad_gpu_memory_label_names_the_label() -> None:
    info = ray_node(resources={"GPU": 1}, labels={"mosu.io/gpu-mem-mib": "80G"})
    with pytest.raises(InvalidInput, match="not an integer") as err:
        node_from_ray(info, default_gpu_type="gpu")
    assert err.value.field == "mosu.io/gpu-mem-mib"


def _st(replica: int, state: ReplicaState, code: int | None, message: str = "") -> ReplicaStatus:
    return ReplicaStatus(replica, f"n{replica}", state, code, message)


@pytest.mark.parametrize(
    ("statuses", "want"),
    [
        pytest.param(
            [_st(0, ReplicaState.SUCCEEDED, 0), _st(1, ReplicaState.SUCCEEDED, 0)],
            (0, "", False),
            id="every replica exited 0: success",
        ),
        pytest.param(
            [
                _st(0, ReplicaState.STOPPED, -15, "killed by SIGTERM"),
                _st(1, ReplicaState.FAILED, 3, "exit code 3"),
            ],
            (3, "replica 1 on n1: exit code 3", False),
            id="the replica that failed is reported, not the sibling stopped for it",
        ),
        pytest.param(
            [
                _st(0, ReplicaState.STOPPED, 0),
                _st(1, ReplicaState.STOPPED, -9, "killed by SIGKILL"),
            ],
            (None, "replica 1 on n1: killed by SIGKILL", False),
            id="a replica killed by a signal has no exit code",
        ),
        pytest.param(
            [
                _st(0, ReplicaState.FAILED, 1, "exit code 1"),
                _st(1, ReplicaState.LOST, None, "node n1 is down"),
            ],
            (None, "replica 1 lost: node n1 is down", True),
            id="a lost replica makes the attempt lost whatever the others did",
        ),
    ],
)
def test_exit_report_of_a_gang(
    statuses: list[ReplicaStatus], want: tuple[int | None, str, bool]
) -> None:
    report = _exit_report(9, 2, statuses)
    assert (report.job_id, report.attempt) == (9, 2)
    assert (report.exit_code, report.message, report.lost) == want


def test_module_imports_without_ray_and_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from pathlib import Path\n"
        "from mosu.agent.executors.ray_executor import RayGangs\n"
        "from mosu.core.errors import PlatformError\n"
        "try:\n"
        "    RayGangs(address='127.0.0.1:1', log_dir=Path('.')).nodes()\n"
        "except PlatformError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.strip() == "the ray executor needs Ray; install it with: pip install 'mosu[ray]'"
    )


@pytest.mark.parametrize(
    ("address", "want_message"),
    [
        ("nohost", "--ray-address: expected HOST:PORT of the Ray head, got 'nohost'"),
        ("127.0.0.1:{closed}", "cannot reach the Ray head at 127.0.0.1:{closed}: "),
    ],
)
def test_unreachable_ray_head_fails_fast_with_a_clear_message(
    address: str, want_message: str
) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connections are refused
        gangs = RayGangs(address=address.format(closed=closed), log_dir=Path("."))
        with pytest.raises(PlatformError) as err:
            gangs.nodes()
    assert str(err.value).startswith(want_message.format(closed=closed))
