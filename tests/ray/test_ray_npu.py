"""Ascend NPUs on a real Ray cluster: a worker started with fake ``--resources
'{"NPU": 8}'`` beside one with 4 fake GPUs, under a real ``mosu up --executor ray``.

The NPU worker is mirrored from Ray's ``NPU`` resource as a Huawei node; an Ascend job
lands there only, its replica sees ``ASCEND_RT_VISIBLE_DEVICES`` and no other vendor's
variable, and while it runs Ray counts its NPUs as taken, as its own accelerator manager
would for a task that asked for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosu.core.api import JobSpec, JobState, QuotaSpec
from tests.e2e.conftest import Server, wait_for
from tests.jobs import JOB_PYTHON

from .conftest import RayCluster, run_ray_cluster

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")

SELECTORS = {
    "CUDA_VISIBLE_DEVICES",
    "ASCEND_RT_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "MLU_VISIBLE_DEVICES",
}
# Print the environment, then hold the devices until the test lets go.
HOLD = (
    "import json, os, sys, time, pathlib\n"
    "print(json.dumps(dict(os.environ)), flush=True)\n"
    "release = pathlib.Path(sys.argv[1])\n"
    "deadline = time.monotonic() + 60\n"
    "while not release.exists() and time.monotonic() < deadline: time.sleep(0.1)\n"
)
WORKERS: dict[str, list[str] | None] = {
    # name: ``ray start`` arguments besides the head's address and one CPU
    "w0": [
        "--num-gpus=0",
        "--labels=mosu.io/node=w0",
        f"--resources={json.dumps({'NPU': 8, 'accelerator_type:Ascend910B': 1})}",
    ],
    "w1": [
        "--num-gpus=4",
        f"--resources={json.dumps({'mosu-gpu-type:H800': 4})}",
        "--labels=mosu.io/node=w1",
    ],
}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A GPU-less head, an NPU worker (w0) and a GPU worker (w1), on 127.0.0.1."""
    yield from run_ray_cluster(ray, tmp_path_factory, namespace="mosu-npu-test", workers=WORKERS)


def _free_npus() -> float:
    """NPUs Ray counts as free on the cluster now."""
    return float(ray.available_resources().get("NPU", 0.0))


def _env(server: Server, token: str, job_id: int) -> dict[str, str]:
    def printed() -> dict[str, str] | None:
        with server.client(token) as c:
            text = c.logs(job_id).data
        line = next((x for x in text.splitlines() if x.startswith("{")), None)
        return json.loads(line) if line else None

    return wait_for(printed, timeout=90, what=f"job {job_id} to print its environment")


def test_an_npu_node_from_ray_runs_ascend_jobs_with_the_ascend_contract(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as op:
        nodes = wait_for(
            lambda: len(op.list_nodes()) == 2 and op.list_nodes(),
            timeout=30,
            what="the Ray nodes in the store",
        )
        assert [(n.name, n.gpu_type, n.vendor, n.gpus) for n in nodes] == [
            ("w0", "Ascend910B", "huawei", 8),
            ("w1", "H800", "nvidia", 4),
        ]
        quotas = {t: QuotaSpec(guaranteed=8) for t in ("Ascend910B", "H800")}
        token = op.create_tenant("acme", quotas).token
    assert _free_npus() == 8

    release = tmp_path / "release"
    with server.client(token) as c:
        npu_job = c.submit(
            JobSpec(
                name="npu",
                gpus=2,
                gpu_type="Ascend910B",
                command=[JOB_PYTHON, "-c", HOLD, str(release)],
            )
        )
        gpu_job = c.submit(
            JobSpec(
                name="gpu", gpus=1, gpu_type="H800", command=[JOB_PYTHON, "-c", HOLD, str(release)]
            )
        )
    npu_env = _env(server, token, npu_job.id)
    gpu_env = _env(server, token, gpu_job.id)

    assert npu_env["MOSU_NODE"] == "w0"
    shown = {k: v for k, v in npu_env.items() if k in SELECTORS}
    assert list(shown) == ["ASCEND_RT_VISIBLE_DEVICES"]
    assert shown["ASCEND_RT_VISIBLE_DEVICES"] == npu_env["MOSU_DEVICES"]
    assert len(npu_env["MOSU_DEVICES"].split(",")) == 2
    assert npu_env["MOSU_ACCELERATOR_VENDOR"] == "huawei"
    assert (npu_env["RANK"], npu_env["WORLD_SIZE"], npu_env["LOCAL_RANK"]) == ("0", "1", "0")

    assert gpu_env["MOSU_NODE"] == "w1"
    assert {k for k in gpu_env if k in SELECTORS} == {"CUDA_VISIBLE_DEVICES"}
    assert gpu_env["MOSU_ACCELERATOR_VENDOR"] == "nvidia"

    # Ray counts the replica's NPUs as taken while it runs: its runner asked for them.
    wait_for(lambda: _free_npus() == 6, timeout=10, what="Ray to count 2 NPUs as taken")
    release.write_text("go")
    with server.client(token) as c:
        for job_id in (npu_job.id, gpu_job.id):
            wait_for(
                lambda j=job_id: c.get_job(j).state == JobState.SUCCEEDED,
                timeout=60,
                what=f"job {job_id} to succeed",
            )
    wait_for(lambda: _free_npus() == 8, timeout=30, what="Ray to free the NPUs")


def test_ascend_jobs_fill_the_npus_and_never_take_a_gpu(server: Server, tmp_path: Path) -> None:
    with server.client() as op:
        token = op.create_tenant(
            "beta", {t: QuotaSpec(guaranteed=8) for t in ("Ascend910B", "H800")}
        ).token
    release = tmp_path / "release"
    command = [JOB_PYTHON, "-c", HOLD, str(release)]
    with server.client(token) as c:
        jobs = [
            c.submit(JobSpec(name=f"n{i}", gpus=4, gpu_type="Ascend910B", command=command))
            for i in range(3)
        ]
        gpu = c.submit(JobSpec(name="g", gpus=4, gpu_type="H800", command=command))
        first = [_env(server, token, j.id) for j in jobs[:2]]
        assert {e["MOSU_NODE"] for e in first} == {"w0"}
        assert sorted(e["MOSU_DEVICES"] for e in first) == ["0,1,2,3", "4,5,6,7"]
        assert _env(server, token, gpu.id)["MOSU_NODE"] == "w1"
        # The third waits for NPUs: the cycle that started the later H800 job left it.
        assert c.get_job(jobs[2].id).state == JobState.PENDING
        release.write_text("go")
        third = _env(server, token, jobs[2].id)
        assert third["MOSU_NODE"] == "w0"
        assert third["MOSU_ACCELERATOR_VENDOR"] == "huawei"
        for job in [*jobs, gpu]:
            wait_for(
                lambda j=job.id: c.get_job(j).state == JobState.SUCCEEDED,
                timeout=60,
                what=f"job {job.id} to succeed",
            )
