"""The Ray executor on a real Ray cluster (head + two workers with 4 fake GPUs each).

The tests share one cluster and run in file order; the node-failure test kills a worker
and so comes last.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mosu.agent.executors.ray_executor import (
    GangSpec,
    GangStartError,
    RayExecutor,
    RayGang,
    ReplicaState,
    ReplicaStatus,
)
from mosu.core.models import NodeState, ReplicaPlacement

from .conftest import GPU_TYPE, RayCluster

pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")

WAIT_S = 60.0

# Writes what it sees to <out>/replica-<RANK>.json, then behaves as its mode says.
REPLICA_SCRIPT = r"""
import json, os, signal, sys, time
modes, out = sys.argv[1].split(","), sys.argv[2]
rank = int(os.environ["RANK"])
mode = modes[rank]
seen = {k: os.environ.get(k) for k in (
    "CUDA_VISIBLE_DEVICES", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
    "LOCAL_RANK", "NODE_RANK", "NNODES", "MOSU_JOB_ID", "MOSU_REPLICA",
    "MOSU_NUM_REPLICAS", "MOSU_NODE", "MOSU_GPUS_PER_REPLICA", "FROM_JOB")}
seen["pid"] = os.getpid()
ancestors, pid = [], os.getppid()
while pid > 1:
    ancestors.append(pid)
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
seen["ancestors"] = ancestors
def on_term(signum, frame):
    time.sleep(0.5)  # a checkpoint takes a moment
    with open(os.path.join(out, f"checkpoint-{rank}"), "w") as f:
        f.write("step 42")
    sys.exit(0)
if mode == "trap":
    signal.signal(signal.SIGTERM, on_term)
elif mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"hello from rank {rank} on {os.environ['MOSU_NODE']}", flush=True)
tmp = os.path.join(out, f"replica-{rank}.tmp")
with open(tmp, "w") as f:
    json.dump(seen, f)
os.replace(tmp, os.path.join(out, f"replica-{rank}.json"))
if mode == "exit":
    sys.exit(0)
if mode == "fail":
    sys.exit(3)
deadline = time.monotonic() + 90  # never outlive a broken test run for long
while time.monotonic() < deadline:
    time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def executor(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> RayExecutor:
    return RayExecutor(
        address=ray_cluster.address,
        log_dir=tmp_path_factory.mktemp("controller-logs"),
        remote_log_dir=str(tmp_path_factory.mktemp("node-logs")),
        call_timeout_s=5.0,
        start_timeout_s=45.0,
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "replica.py"
    path.write_text(REPLICA_SCRIPT)
    return path


def _spec(
    job_id: str, script: Path, out: Path, modes: str, *placement: ReplicaPlacement
) -> GangSpec:
    return GangSpec(
        job_id=job_id,
        command=[sys.executable, str(script), modes, str(out)],
        placement=placement,
        env={"FROM_JOB": "yes", "RANK": "99"},
    )


def _wait(what: str, done: Callable[[], bool], timeout_s: float = WAIT_S) -> float:
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def _poll_until_ended(executor: RayExecutor, gang: RayGang) -> list[ReplicaStatus]:
    statuses: list[ReplicaStatus] = []

    def ended() -> bool:
        statuses[:] = executor.poll(gang)
        return all(s.state.terminal for s in statuses)

    _wait(f"gang {gang.job_id} to end", ended)
    return statuses


def _seen(out: Path, rank: int) -> dict[str, object]:
    return json.loads((out / f"replica-{rank}.json").read_text())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_ray_workers_become_mosu_nodes_by_label_and_resource(executor: RayExecutor) -> None:
    nodes = {n.name: n for n in executor.nodes()}

    assert sorted(nodes) == ["w0", "w1"]  # the GPU-less head is not offered
    for name, node in nodes.items():
        assert (node.gpus, node.gpu_type, node.rack, node.state) == (
            4,
            GPU_TYPE,
            f"rack-{name}",
            NodeState.READY,
        )
        assert node.cpu_milli == 1000


def test_gang_runs_one_replica_per_node_with_its_gpus_and_rank(
    executor: RayExecutor, ray_cluster: RayCluster, script: Path, tmp_path: Path
) -> None:
    gpus = (0, 1, 2, 3)
    spec = _spec(
        "gang-ok",
        script,
        tmp_path,
        "exit,exit",
        ReplicaPlacement("w0", gpus),
        ReplicaPlacement("w1", gpus),
    )
    gang = executor.start(spec)
    statuses = _poll_until_ended(executor, gang)

    assert [(s.node, s.state, s.exit_code) for s in statuses] == [
        ("w0", ReplicaState.SUCCEEDED, 0),
        ("w1", ReplicaState.SUCCEEDED, 0),
    ]
    master = {node.node.name: node.address for node in executor.ray_nodes()}["w0"]
    for rank, node in enumerate(("w0", "w1")):
        seen = _seen(tmp_path, rank)
        assert seen == seen | {
            "CUDA_VISIBLE_DEVICES": "0,1,2,3",
            "MASTER_ADDR": master,
            "MASTER_PORT": str(gang.master_port),
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": "0",
            "NODE_RANK": str(rank),
            "NNODES": "2",
            "MOSU_JOB_ID": "gang-ok",
            "MOSU_REPLICA": str(rank),
            "MOSU_NUM_REPLICAS": "2",
            "MOSU_NODE": node,
            "MOSU_GPUS_PER_REPLICA": "4",
            "FROM_JOB": "yes",
        }
        # The replica descends from that node's Ray processes (its runner, its raylet).
        assert ray_cluster.nodes[node].pid in seen["ancestors"]
        log = executor.log_path("gang-ok", rank).read_text()
        assert f"hello from rank {rank} on {node}" in log
    assert 1024 <= gang.master_port <= 65535
    assert executor.runner_names("gang-ok") == []


def test_failing_replica_is_reported_with_its_exit_code(
    executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    spec = _spec("gang-fail", script, tmp_path, "fail", ReplicaPlacement("w1", (2,)))
    gang = executor.start(spec)
    statuses = _poll_until_ended(executor, gang)

    assert [(s.state, s.exit_code, s.message) for s in statuses] == [
        (ReplicaState.FAILED, 3, "exit code 3")
    ]
    assert _seen(tmp_path, 0)["CUDA_VISIBLE_DEVICES"] == "2"


def test_stop_lets_a_trapping_replica_checkpoint_and_kills_one_that_ignores_sigterm(
    executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    spec = _spec(
        "gang-stop",
        script,
        tmp_path,
        "trap,ignore",
        ReplicaPlacement("w0", (1, 3)),
        ReplicaPlacement("w1", (0, 2)),
    )
    gang = executor.start(spec)
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )
    grace_s = 3.0
    began = time.monotonic()
    statuses = executor.stop(gang, grace_s=grace_s)
    took = time.monotonic() - began

    assert [(s.state, s.exit_code) for s in statuses] == [
        (ReplicaState.STOPPED, 0),
        (ReplicaState.STOPPED, -9),
    ]
    assert (tmp_path / "checkpoint-0").read_text() == "step 42"
    assert not (tmp_path / "checkpoint-1").exists()
    assert grace_s <= took < grace_s + 10.0
    assert not _pid_alive(int(_seen(tmp_path, 1)["pid"]))
    assert [_seen(tmp_path, r)["CUDA_VISIBLE_DEVICES"] for r in (0, 1)] == ["1,3", "0,2"]
    assert executor.runner_names("gang-stop") == []
    assert executor.stop(gang, grace_s=grace_s) == statuses  # stopping twice is harmless


def test_gang_start_is_all_or_nothing(executor: RayExecutor, script: Path, tmp_path: Path) -> None:
    spec = _spec(
        "gang-partial",
        script,
        tmp_path,
        "sleep,sleep",
        ReplicaPlacement("w0", (0,)),
        ReplicaPlacement("w1", (7,)),  # w1 has GPUs 0..3 only
    )
    with pytest.raises(GangStartError, match=r"replica 1 on w1 did not start: .*GPU indices \[7\]"):
        executor.start(spec)

    assert executor.runner_names("gang-partial") == []
    started = tmp_path / "replica-0.json"
    if started.exists():  # replica 0 may have started before replica 1 refused
        assert not _pid_alive(int(_seen(tmp_path, 0)["pid"]))


def test_unknown_node_is_refused_before_anything_starts(
    executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    spec = _spec("gang-nowhere", script, tmp_path, "exit", ReplicaPlacement("w9", (0,)))
    with pytest.raises(GangStartError, match="replica 0's node 'w9' is not in the Ray cluster"):
        executor.start(spec)
    assert executor.runner_names("gang-nowhere") == []


def test_killed_worker_node_is_detected_and_its_replica_lost(
    executor: RayExecutor, ray_cluster: RayCluster, script: Path, tmp_path: Path
) -> None:
    spec = _spec(
        "gang-node-dies",
        script,
        tmp_path,
        "sleep,sleep",
        ReplicaPlacement("w0", (0, 1, 2, 3)),
        ReplicaPlacement("w1", (0, 1, 2, 3)),
    )
    gang = executor.start(spec)
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )

    ray_cluster.kill_node("w1")
    statuses: list[ReplicaStatus] = []

    def detected() -> bool:
        statuses[:] = executor.poll(gang)
        return statuses[1].state is ReplicaState.LOST and "w1" in executor.down_nodes()

    took = _wait("the dead node to be detected", detected, timeout_s=30.0)
    print(f"dead node detected after {took:.1f}s")

    assert statuses[0].state is ReplicaState.RUNNING
    assert {n.name: n.state for n in executor.nodes()} == {
        "w0": NodeState.READY,
        "w1": NodeState.DOWN,
    }
    # The replica on the dead node died with its runner instead of running on unaccounted.
    assert not _pid_alive(int(_seen(tmp_path, 1)["pid"]))
    final = executor.stop(gang, grace_s=1.0)
    assert [s.state for s in final] == [ReplicaState.STOPPED, ReplicaState.LOST]
