"""A mixed cluster through a real ``mosu up``: nodes of four vendors, ``mosu node list``
showing each vendor, a replica of each printing its environment, and bad input that is
one line."""

from __future__ import annotations

import json

from tests.cli.test_platform_cli import cli_env, mosu, mosu_process, one_line_error  # noqa: F401
from tests.e2e.conftest import OPERATOR_TOKEN, free_port, make_server, wait_for  # noqa: F401
from tests.jobs import JOB_PYTHON

NODES = [
    # name, type, vendor declared (None: from the table), the variable its replicas get
    ("npu-0", "Ascend910B", "huawei", "ASCEND_RT_VISIBLE_DEVICES"),
    ("mi-0", "MI300X", None, "HIP_VISIBLE_DEVICES"),
    ("mlu-0", "MLU370-X8", "cambricon", "MLU_VISIBLE_DEVICES"),
]
SELECTORS = {
    "CUDA_VISIBLE_DEVICES",
    "ASCEND_RT_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "MLU_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "ASCEND_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
}
PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_a_mixed_cluster_through_mosu_up(make_server, cli_env, tmp_path):  # noqa: F811
    server = make_server("--gpus", "8", "--gpu-type", "H800", "--node-name", "gpu-0")
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}
    for name, gpu_type, vendor, _ in NODES:
        args = ["node", "add", name, "--gpus", "8", "--gpu-type", gpu_type]
        args += ["--gpu-vendor", vendor] if vendor else []
        assert mosu(*args, env=op).stdout.startswith(f"node {name}: 8 x {gpu_type} (")

    listed = json.loads(mosu("node", "list", "-o", "json", env=op).stdout)
    assert {n["name"]: (n["gpu_type"], n["vendor"]) for n in listed} == {
        "gpu-0": ("H800", "nvidia"),
        "npu-0": ("Ascend910B", "huawei"),
        "mi-0": ("MI300X", "amd"),
        "mlu-0": ("MLU370-X8", "cambricon"),
    }
    table = mosu("node", "list", env=op).stdout.splitlines()
    assert "vendor" in table[1]
    assert any("npu-0" in line and "Ascend910B" in line and "huawei" in line for line in table)

    guarantees = [f"{t}=8" for t in ("H800", "Ascend910B", "MI300X", "MLU370-X8")]
    args = ["tenant", "create", "acme", "-o", "json"]
    for g in guarantees:
        args += ["-g", g]
    acme = {**cli_env, "MOSU_TOKEN": json.loads(mosu(*args, env=op).stdout)["token"]}

    expected = {"H800": ("gpu-0", "CUDA_VISIBLE_DEVICES", "nvidia")}
    expected.update({t: (n, var, (v or "amd")) for n, t, v, var in NODES})
    jobs = {}
    for gpu_type in expected:
        submitted = mosu(
            "job", "submit", "--name", f"env-{gpu_type.lower()}", "--gpus", "2",
            "--gpu-type", gpu_type, "--replicas", "2", "--",
            JOB_PYTHON, "-c", PRINT_ENV, env=acme,
        )  # fmt: skip
        jobs[gpu_type] = int(submitted.stdout.strip())

    def finished() -> bool:
        shown = [
            json.loads(mosu("job", "show", str(j), "-o", "json", env=acme).stdout)["job"]
            for j in jobs.values()
        ]
        return all(s["state"] == "succeeded" for s in shown)

    wait_for(finished, timeout=60, what="a job on every vendor's node to succeed")
    for gpu_type, job_id in jobs.items():
        node, variable, vendor = expected[gpu_type]
        for replica in (0, 1):
            out = mosu("job", "logs", str(job_id), "--replica", str(replica), env=acme).stdout
            env = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
            assert env["MOSU_NODE"] == node
            shown = {k: v for k, v in env.items() if k in SELECTORS}
            assert list(shown) == [variable], f"{gpu_type}: {shown}"
            assert shown[variable] == env["MOSU_DEVICES"] != ""
            assert len(env["MOSU_DEVICES"].split(",")) == 2
            assert env["MOSU_ACCELERATOR_VENDOR"] == vendor
            assert (env["RANK"], env["WORLD_SIZE"]) == (str(replica), "2")

    # Bad input: one line naming the field, a non-zero exit.
    bad = mosu("node", "add", "x-0", "--gpus", "8", "--gpu-type", "H800", "--gpu-vendor", "intel",
               env=op, ok=False)  # fmt: skip
    one_line_error(bad, "gpu_vendor", "unknown vendor 'intel'", "nvidia, huawei, amd, cambricon")
    wrong = mosu("node", "add", "x-0", "--gpus", "8", "--gpu-type", "H800", "--gpu-vendor",
                 "huawei", env=op, ok=False)  # fmt: skip
    one_line_error(wrong, "gpu_vendor", "H800 is made by nvidia, not huawei")
    half = mosu("job", "submit", "--name", "half", "--gpus", "0.5", "--gpu-type", "Ascend910B",
                "--", "true", env=acme, ok=False)  # fmt: skip
    one_line_error(half, "gpus", "Ascend910B (huawei) is scheduled in whole devices only")
    anywhere = mosu("job", "submit", "--name", "half", "--gpus", "0.5", "--", "true",
                    env=acme, ok=False)  # fmt: skip
    one_line_error(anywhere, "gpu_type", "name one of H800")
    assert {n["name"] for n in json.loads(mosu("node", "list", "-o", "json", env=op).stdout)} == {
        "gpu-0",
        "npu-0",
        "mi-0",
        "mlu-0",
    }


def test_mosu_up_with_an_unknown_vendor_is_one_line(cli_env, tmp_path):  # noqa: F811
    args = ["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())]
    for extra, fragment in (
        (["--gpus", "8", "--gpu-vendor", "intel"], "unknown vendor 'intel'"),
        (["--gpus", "8", "--gpu-type", "Ascend910B", "--gpu-vendor", "amd"], "not amd"),
    ):
        one_line_error(mosu_process(*args, *extra, env=cli_env), "--gpu-vendor", fragment)
