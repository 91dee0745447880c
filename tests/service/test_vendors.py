"""Vendors through the API: a node's vendor declared or inferred, stored and shown; the
vendor each launch carries; a mixed cluster where a type's jobs stay on its nodes; and
fractional requests only where the vendor shares a device."""

from __future__ import annotations

import pytest

from tests.service.conftest import bearer, submit


def add_node(api, name: str, gpu_type: str, gpus: int = 8, **extra: object):
    return api.post("/v1/nodes", json={"name": name, "gpu_type": gpu_type, "gpus": gpus, **extra})


def mixed_cluster(api) -> str:
    """8 H800 and 8 Ascend910B (declared vendor) on one node each, and one tenant with
    room on both; returns its token."""
    assert add_node(api, "gpu-0", "H800").status_code == 201
    assert add_node(api, "npu-0", "Ascend910B", gpu_vendor="huawei").status_code == 201
    quotas = {"H800": {"guaranteed": 8}, "Ascend910B": {"guaranteed": 8}}
    r = api.post("/v1/tenants", json={"name": "acme", "quotas": quotas})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_a_node_s_vendor_is_declared_or_inferred_and_shown(api):
    r = add_node(api, "npu-0", "Ascend910B", gpu_vendor="Huawei")
    assert r.status_code == 201, r.text
    assert (r.json()["vendor"], r.json()["gpu_memory_mib"]) == ("huawei", 65536)
    assert add_node(api, "mi-0", "MI300X").json()["vendor"] == "amd"
    assert add_node(api, "mlu-0", "MLU370-X8", gpus=16).json()["vendor"] == "cambricon"
    assert add_node(api, "g-0", "G2", gpu_memory="12Gi").json()["vendor"] == "nvidia"
    # A type the table does not know may be declared any vendor's.
    assert add_node(api, "x-0", "Atlas-X", gpu_vendor="huawei").json()["vendor"] == "huawei"
    listed = {n["name"]: (n["gpu_type"], n["vendor"]) for n in api.get("/v1/nodes").json()}
    assert listed == {
        "g-0": ("G2", "nvidia"),
        "mi-0": ("MI300X", "amd"),
        "mlu-0": ("MLU370-X8", "cambricon"),
        "npu-0": ("Ascend910B", "huawei"),
        "x-0": ("Atlas-X", "huawei"),
    }
    by_type = {s["gpu_type"]: s["vendor"] for s in api.get("/v1/cluster").json()["gpu_types"]}
    assert by_type["Ascend910B"] == "huawei" and by_type["G2"] == "nvidia"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"gpu_type": "Ascend910B", "gpu_vendor": "intel"}, 422, "unknown vendor 'intel'"),
        ({"gpu_type": "H800", "gpu_vendor": "huawei"}, 422, "H800 is made by nvidia, not huawei"),
        ({"gpu_type": "H800", "gpu_vendor": ""}, 422, "unknown vendor ''"),
    ],
)
def test_a_bad_vendor_is_a_4xx_naming_the_field(api, body, status, fragment):
    r = api.post("/v1/nodes", json={"name": "n0", "gpus": 8, **body})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == "gpu_vendor"
    assert fragment in error["message"]
    assert api.get("/v1/nodes").json() == []


def test_one_type_has_one_vendor_across_the_cluster(api):
    assert add_node(api, "a", "Atlas-X", gpu_vendor="huawei").status_code == 201
    r = add_node(api, "b", "Atlas-X", gpu_vendor="cambricon")
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "gpu_vendor"
    assert "Atlas-X is huawei's on node a" in r.json()["error"]["message"]
    # The node itself may change its vendor while nothing runs there.
    assert add_node(api, "a", "Atlas-X", gpu_vendor="cambricon").json()["vendor"] == "cambricon"


def test_a_node_s_vendor_cannot_change_under_a_running_job(api, platform):
    token = mixed_cluster(api)
    assert add_node(api, "x-0", "Atlas-X", gpu_vendor="huawei").status_code == 201
    api.put("/v1/tenants/acme/quotas", json={"quotas": {"*": {"guaranteed": 24}}})
    submit(api, token, gpus=8, gpu_type="Atlas-X")
    platform.loop.run_once()
    r = add_node(api, "x-0", "Atlas-X", gpu_vendor="cambricon")
    assert (r.status_code, r.json()["error"]["field"]) == (409, "gpu_vendor")


def test_every_launch_carries_its_node_s_vendor(api, platform, executor):
    token = mixed_cluster(api)
    npu = submit(api, token, gpus=4, gpu_type="Ascend910B", replicas=2)
    gpu = submit(api, token, gpus=2, gpu_type="H800")
    platform.loop.run_once()
    npu_launch, gpu_launch = executor.launched[npu["id"]], executor.launched[gpu["id"]]
    assert [(r.node, r.vendor) for r in npu_launch.replicas] == [("npu-0", "huawei")] * 2
    assert sorted(g for r in npu_launch.replicas for g in r.gpu_indices) == list(range(8))
    assert [(r.node, r.vendor) for r in gpu_launch.replicas] == [("gpu-0", "nvidia")]


def test_an_ascend_job_never_lands_on_an_h800_node(api, platform, executor):
    """8 H800 + 8 Ascend910B: Ascend jobs of every size fill the NPUs and the rest wait,
    though every H800 is idle; H800 jobs never take an NPU."""
    token = mixed_cluster(api)
    npu_jobs = [submit(api, token, gpus=g, gpu_type="Ascend910B") for g in (4, 2, 1, 1, 8, 2)]
    for _ in range(3):
        platform.loop.run_once()
    started = [j["id"] for j in npu_jobs if j["id"] in executor.launched]
    assert started == [j["id"] for j in npu_jobs[:4]]
    for job_id in started:
        assert {(r.node, r.vendor) for r in executor.launched[job_id].replicas} == {
            ("npu-0", "huawei")
        }
    waiting = api.get(f"/v1/jobs/{npu_jobs[4]['id']}", headers=bearer(token)).json()
    assert waiting["state"] == "pending"
    h800 = submit(api, token, gpus=8, gpu_type="H800")
    platform.loop.run_once()
    assert [(r.node, r.vendor) for r in executor.launched[h800["id"]].replicas] == [
        ("gpu-0", "nvidia")
    ]
    for job_id in started:
        executor.exit(job_id)
    for _ in range(3):
        platform.loop.run_once()
    late = executor.launched[npu_jobs[4]["id"]]
    assert [(r.node, r.vendor, r.gpu_indices) for r in late.replicas] == [
        ("npu-0", "huawei", list(range(8)))
    ]


def test_a_share_of_a_device_only_where_the_vendor_shares(api):
    token = mixed_cluster(api)
    r = api.post(
        "/v1/jobs",
        json={"name": "j", "command": ["true"], "gpus": 0.5, "gpu_type": "Ascend910B"},
        headers=bearer(token),
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "gpus"
    assert "Ascend910B (huawei) is scheduled in whole devices only" in r.json()["error"]["message"]
    # No type named: it could land on the NPUs, so it must name a type that shares.
    r = api.post(
        "/v1/jobs", json={"name": "j", "command": ["true"], "gpus": 0.5}, headers=bearer(token)
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "gpu_type"
    assert "name one of H800" in r.json()["error"]["message"]
    shared = submit(api, token, gpus=0.5, gpu_type="H800")
    assert shared["gpus"] == 0.5
    assert submit(api, token, gpus=1, gpu_type="Ascend910B")["gpus"] == 1
