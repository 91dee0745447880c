"""The device contract per vendor: the one builder, then replicas started by real
supervisors that print what they were given."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.replica_env import (
    ReplicaContract,
    ReplicaSlot,
    build_env,
    contract_keys,
    gang_contracts,
)
from mosu.core.accelerators import DEVICE_SELECTION_VARIABLES, Vendor
from mosu.core.api import JobExit
from tests.agent.conftest import launch

VISIBILITY = {
    Vendor.NVIDIA: "CUDA_VISIBLE_DEVICES",
    Vendor.HUAWEI: "ASCEND_RT_VISIBLE_DEVICES",
    Vendor.AMD: "HIP_VISIBLE_DEVICES",
    Vendor.CAMBRICON: "MLU_VISIBLE_DEVICES",
}
DISTRIBUTED = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "NNODES",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
)
SELECTORS = DEVICE_SELECTION_VARIABLES - {"MOSU_DEVICES", "MOSU_ACCELERATOR_VENDOR"}
"""Variables some runtime reads to pick its devices."""

HOSTILE_ENV = {
    "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
    "ASCEND_RT_VISIBLE_DEVICES": "7",
    "ROCR_VISIBLE_DEVICES": "0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "MOSU_DEVICES": "0",
    "LR": "0.1",
}
"""A job's env that tries to pick devices itself: none of it but LR reaches the replica."""


def contract(vendor: str, indices: tuple[int, ...] = (4, 5)) -> ReplicaContract:
    return ReplicaContract(
        instance="i1",
        job_id=7,
        attempt=2,
        replica=1,
        num_replicas=4,
        node="n3",
        gpu_indices=indices,
        gpu_milli=1000,
        master_addr="10.0.0.1",
        master_port=29500,
        vendor=vendor,
    )


@pytest.mark.parametrize("vendor", list(Vendor))
def test_exactly_one_vendor_s_variable_with_the_assigned_indices(vendor: Vendor):
    env = build_env(contract(vendor), job_env=HOSTILE_ENV, home="/h", checkpoint_file="/h/c")
    assert {k: v for k, v in env.items() if k in SELECTORS} == {VISIBILITY[vendor]: "4,5"}
    assert (env["MOSU_DEVICES"], env["MOSU_ACCELERATOR_VENDOR"]) == ("4,5", vendor.value)
    assert env["LR"] == "0.1"
    assert set(env) == (contract_keys(vendor) - {"MOSU_GPU_FRACTION"}) | {"PATH", "LANG", "LR"}


def test_the_distributed_variables_are_the_same_for_every_vendor():
    seen = {
        vendor: {k: build_env(contract(vendor), job_env={}, home="/h")[k] for k in DISTRIBUTED}
        for vendor in Vendor
    }
    assert all(values == seen[Vendor.NVIDIA] for values in seen.values())
    assert seen[Vendor.NVIDIA] == {
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
        "RANK": "1",
        "NODE_RANK": "1",
        "WORLD_SIZE": "4",
        "NNODES": "4",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
    }


def test_a_cpu_only_replica_is_shown_no_device_of_its_node_s_vendor():
    env = build_env(contract("huawei", ()), job_env={}, home="/h")
    assert (env["ASCEND_RT_VISIBLE_DEVICES"], env["MOSU_DEVICES"]) == ("", "")
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_a_contract_written_with_a_fraction_reads_as_thousandths():
    written = contract("nvidia", (2,)).to_json()
    del written["gpu_milli"]
    written["gpu_fraction"] = 0.25
    written["job_id"] = "7"  # Ray's runners once wrote ids as text
    restored = ReplicaContract.from_json(json.loads(json.dumps(written)))
    assert (restored.gpu_milli, restored.job_id) == (250, 7)
    env = build_env(restored, job_env={}, home="/h")
    assert (env["MOSU_GPU_FRACTION"], env["MOSU_JOB_ID"]) == ("0.25", "7")


def test_every_executor_s_gang_gets_its_contracts_from_one_builder():
    slots = [
        ReplicaSlot(0, "w0", (0, 1), 1000, "nvidia"),
        ReplicaSlot(1, "w1", (2, 3), 1000, "huawei"),
    ]
    contracts = gang_contracts(
        instance="i1", job_id=7, attempt=2, slots=slots, master_addr="10.0.0.5", master_port=29500
    )
    assert [(c.replica, c.num_replicas, c.node, c.gpu_indices, c.vendor) for c in contracts] == [
        (0, 2, "w0", (0, 1), "nvidia"),
        (1, 2, "w1", (2, 3), "huawei"),
    ]
    assert {(c.master_addr, c.master_port, c.job_id, c.attempt) for c in contracts} == {
        ("10.0.0.5", 29500, 7, 2)
    }
    envs = [build_env(c, job_env={}, home="/h") for c in contracts]
    assert [(e["RANK"], e["WORLD_SIZE"], e["MASTER_ADDR"]) for e in envs] == [
        ("0", "2", "10.0.0.5"),
        ("1", "2", "10.0.0.5"),
    ]
    assert "MOSU_GPU_FRACTION" not in envs[0]


def test_a_contract_written_before_vendors_is_nvidia_s():
    written = contract("nvidia").to_json()
    del written["vendor"]
    restored = ReplicaContract.from_json(json.loads(json.dumps(written)))
    assert restored.vendor == "nvidia"
    assert build_env(restored, job_env={}, home="/h")["CUDA_VISIBLE_DEVICES"] == "4,5"


ENV_DUMP = textwrap.dedent(
    """
    import json, os
    print(json.dumps(dict(os.environ)), flush=True)
    """
)


def test_replicas_of_each_vendor_see_only_their_vendor_s_variable(make_executor, tmp_path):
    """One two-replica job per vendor through real supervisors, each replica printing its
    environment: exactly one device-selecting variable, its vendor's, with its indices."""
    ex: LocalExecutor = make_executor()
    gpus = ((3, 1), (6,))
    for job_id, vendor in enumerate(Vendor, start=1):
        ex.start(
            launch(tmp_path, ENV_DUMP, job_id=job_id, gpus=gpus, env=HOSTILE_ENV, vendor=vendor)
        )
    exits: list[JobExit] = []
    deadline = time.monotonic() + 60
    while len(exits) < len(Vendor) and time.monotonic() < deadline:
        exits += ex.poll()
        time.sleep(0.02)
    assert sorted(e.job_id for e in exits if e.exit_code == 0) == [1, 2, 3, 4]
    for job_id, vendor in enumerate(Vendor, start=1):
        for replica, indices in enumerate(("3,1", "6")):
            log = tmp_path / "logs" / str(job_id) / f"replica-{replica}.log"
            env = json.loads(next(x for x in log.read_text().splitlines() if x.startswith("{")))
            assert {k: v for k, v in env.items() if k in SELECTORS} == {VISIBILITY[vendor]: indices}
            assert (env["MOSU_DEVICES"], env["MOSU_ACCELERATOR_VENDOR"]) == (
                indices,
                vendor.value,
            )
            assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == (str(replica), "2", "0")
