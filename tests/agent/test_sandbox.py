"""The pieces of a replica's isolation, each on its own: user names and creation, the
sandbox choice, the environment builder, cgroups and durable records."""

from __future__ import annotations

import json
import multiprocessing
import os
import pwd
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from mosu.agent import cgroups, procfs
from mosu.agent.replica_env import ReplicaContract, build_env, contract_keys
from mosu.agent.sandbox import SandboxUnavailable, resolve
from mosu.agent.supervisor import write_durably
from mosu.agent.unix_users import MAX_NAME, ensure_user, user_name
from tests.agent.conftest import ROOT

needs_root = pytest.mark.skipif(not ROOT, reason="creating users and cgroups needs root")


@pytest.mark.parametrize(
    ("tenant", "want"),
    [
        pytest.param("acme", "mosu-acme", id="a plain tenant name is kept"),
        pytest.param("0day-labs", "mosu-0day-labs", id="a leading digit is fine after mosu-"),
        pytest.param("deep_mind", "mosu-deep_mind", id="underscores are kept"),
        pytest.param("a.b", "mosu_a-b-2e7336dc", id="a dot is replaced and the name gets a hash"),
        pytest.param(
            "x" * 63,
            "mosu_" + "x" * 18 + "-75220b47",
            id="a long name is cut to 32 characters with a hash",
        ),
    ],
)
def test_user_names_are_stable_valid_and_short(tenant: str, want: str):
    got = user_name(tenant)
    assert got == want
    assert len(got) <= MAX_NAME


def test_user_names_never_collide_between_the_plain_and_the_hashed_form():
    names = {user_name(t) for t in ("a.b", "a_b", "a-b", "ab", "x" * 63, "x" * 62)}
    assert len(names) == 6


def _create(args: tuple[str, str]) -> tuple[int, int, str]:
    tenant, home_root = args
    identity = ensure_user(tenant, Path(home_root))
    return identity.uid, identity.gid, str(identity.home)


@needs_root
def test_concurrent_first_uses_create_one_user(tmp_path: Path):
    tenant = f"ci-{uuid.uuid4().hex[:8]}"
    name = user_name(tenant)
    home_root = tmp_path / "homes"
    try:
        with multiprocessing.get_context("fork").Pool(6) as pool:
            got = set(pool.map(_create, [(tenant, str(home_root))] * 12))
        assert len(got) == 1, "every caller sees the same user"
        [(uid, gid, home)] = got
        entries = [e for e in pwd.getpwall() if e.pw_name == name]
        assert [(e.pw_uid, e.pw_gid) for e in entries] == [(uid, gid)]
        assert uid != 0 and gid != 0
        info = Path(home).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o700)
        assert stat.S_IMODE(home_root.stat().st_mode) == 0o711
        again = ensure_user(tenant, home_root)
        assert (again.uid, again.gid) == (uid, gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.mark.parametrize(
    ("requested", "euid", "want"),
    [
        pytest.param("auto", 0, "users", id="root runs each tenant as its own user"),
        pytest.param("users", 0, "users", id="users as root"),
        pytest.param("none", 0, "none", id="none only when asked for by name"),
        pytest.param("none", 1000, "none", id="none as a user, asked for by name"),
    ],
)
def test_the_sandbox_choice(requested: str, euid: int, want: str, tmp_path: Path):
    got = resolve(requested, home_root=None, fallback_home_root=tmp_path, euid=euid)
    assert got.mode == want
    assert got.home_root == ("/var/lib/mosu/homes" if want == "users" else str(tmp_path))


@pytest.mark.parametrize(
    ("requested", "euid", "want_error"),
    [
        pytest.param("users", 1000, "needs a server running as root", id="users needs root"),
        pytest.param("bwrap", 0, "use --sandbox users", id="bwrap as root is refused"),
        pytest.param("docker", 0, "unknown sandbox 'docker'", id="an unknown mode is named"),
    ],
)
def test_a_sandbox_that_cannot_run_is_refused(
    requested: str, euid: int, want_error: str, tmp_path: Path
):
    with pytest.raises(SandboxUnavailable, match=want_error):
        resolve(requested, home_root=None, fallback_home_root=tmp_path, euid=euid)


def test_without_bubblewrap_a_non_root_server_refuses_rather_than_run_unsandboxed(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the PATH
    with pytest.raises(SandboxUnavailable, match="install bubblewrap"):
        resolve("auto", home_root=None, fallback_home_root=tmp_path, euid=1000)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_non_root_server_with_bubblewrap_uses_it(tmp_path: Path):
    got = resolve("auto", home_root=None, fallback_home_root=tmp_path, euid=1000, hide=("/x",))
    assert (got.mode, got.hide) == ("bwrap", ("/x",))


CONTRACT = ReplicaContract(
    instance="i1",
    job_id=7,
    attempt=2,
    replica=1,
    num_replicas=4,
    node="n3",
    gpu_indices=(4, 5),
    gpu_milli=1000,
    master_addr="10.0.0.1",
    master_port=29500,
)


@pytest.mark.parametrize(
    ("contract", "job_env", "want"),
    [
        pytest.param(
            CONTRACT,
            {},
            {
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
                "HOME": "/h",
                "CUDA_VISIBLE_DEVICES": "4,5",
                "MOSU_DEVICES": "4,5",
                "MOSU_ACCELERATOR_VENDOR": "nvidia",
                "MOSU_JOB_ID": "7",
                "MOSU_ATTEMPT": "2",
                "MOSU_REPLICA": "1",
                "MOSU_NUM_REPLICAS": "4",
                "MOSU_NODE": "n3",
                "MOSU_GPUS_PER_REPLICA": "2",
                "MOSU_INSTANCE": "i1",
                "MASTER_ADDR": "10.0.0.1",
                "MASTER_PORT": "29500",
                "RANK": "1",
                "NODE_RANK": "1",
                "WORLD_SIZE": "4",
                "NNODES": "4",
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
            },
            id="the whole contract and nothing else",
        ),
        pytest.param(
            CONTRACT,
            {"RANK": "0", "HOME": "/root", "LR": "0.1", "PATH": "/opt/conda/bin"},
            {"RANK": "1", "HOME": "/h", "LR": "0.1", "PATH": "/opt/conda/bin"},
            id="the job's env adds and may set PATH but cannot override the contract",
        ),
        pytest.param(
            ReplicaContract(**{**CONTRACT.to_json(), "gpu_indices": (2,), "gpu_milli": 500}),
            {},
            {"CUDA_VISIBLE_DEVICES": "2", "MOSU_GPU_FRACTION": "0.5"},
            id="a shared GPU tells its share",
        ),
    ],
)
def test_the_replica_environment(contract, job_env, want):
    got = build_env(contract, job_env=job_env, home="/h")
    assert {k: got.get(k) for k in want} == want
    assert set(got) <= contract_keys(contract.vendor) | {"PATH", "LANG"} | set(job_env)
    if not job_env and contract is CONTRACT:
        assert got == want


def test_the_contract_survives_its_json():
    assert ReplicaContract.from_json(json.loads(json.dumps(CONTRACT.to_json()))) == CONTRACT


@needs_root
@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_a_cgroup_ends_a_forking_tree_at_once(kind: str):
    driver = cgroups.driver(kind)
    if driver is None:
        pytest.skip(f"cgroup {kind} is not available here")
    instance = f"test-{uuid.uuid4().hex[:10]}"
    group = driver.create(instance, "1.1.0")
    # A tree that keeps forking new sessions, as a job escaping its group would.
    loop = "while true; do setsid sleep 300 & sleep 0.01; done"
    proc = subprocess.Popen(["/bin/sh", "-c", loop], preexec_fn=lambda: group.join(os.getpid()))
    try:
        deadline = time.monotonic() + 10
        while len(group.pids()) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        members = group.pids()
        assert len(members) >= 10
        assert {n: g.path for n, g in driver.groups(instance).items()} == {"1.1.0": group.path}
        deadline = time.monotonic() + 10
        while group.pids() and time.monotonic() < deadline:
            group.kill()
            time.sleep(0.01)
        assert group.pids() == set()
        assert not any(procfs.is_running(p) for p in members)
        assert group.remove()
        assert not group.path.exists()
        assert not group.path.parent.exists(), "an empty instance directory goes too"
    finally:
        proc.kill()
        proc.wait()
        group.kill()
        group.remove()


def test_a_durable_record_is_whole_private_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "exit.json"
    write_durably(target, {"code": 3})
    write_durably(target, {"code": 4})
    assert json.loads(target.read_text()) == {"code": 4}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exit.json"]
