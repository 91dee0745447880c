"""The Ray executor on a real Ray cluster (head + two workers with 4 fake GPUs each).

The tests share one cluster and run in file order; the node-failure test kills a worker
and so comes last.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mosu.agent.executors.ray_executor import (
    GangStartError,
    RayExecutor,
    RayGang,
    RayGangs,
    ReplicaState,
    ReplicaStatus,
)
from mosu.core.api import JobExit, JobLaunch, ReplicaLaunch
from mosu.core.executor import AttemptRecord, ReplicaRecord
from mosu.core.models import NodeState, ReplicaPlacement

from .conftest import GPU_TYPE, RayCluster, replica_command

pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")

WAIT_S = 60.0


@pytest.fixture(scope="module")
def executor(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> RayGangs:
    return RayGangs(
        address=ray_cluster.address,
        log_dir=tmp_path_factory.mktemp("controller-logs"),
        remote_log_dir=str(tmp_path_factory.mktemp("node-logs")),
        call_timeout_s=5.0,
        start_timeout_s=45.0,
    )


def gang_launch(
    job_id: int, argv: list[str], *placement: ReplicaPlacement, env: dict[str, str] | None = None
) -> JobLaunch:
    """A launch of ``argv`` on ``placement``, its logs where ``RayGangs`` puts them."""
    return JobLaunch(
        job_id=job_id,
        attempt=1,
        tenant="default",
        argv=argv,
        env=env or {},
        workdir=None,
        replicas=[
            ReplicaLaunch(
                replica=i,
                node=rp.node,
                gpu_indices=list(rp.gpu_indices),
                gpu_milli=rp.gpu_milli,
                log_path="",
            )
            for i, rp in enumerate(placement)
        ],
    )


def _spec(
    job_id: int, script: Path, out: Path, modes: str, *placement: ReplicaPlacement
) -> JobLaunch:
    env = {"FROM_JOB": "yes", "RANK": "99"}
    return gang_launch(job_id, replica_command(script, modes, out), *placement, env=env)


def _wait(what: str, done: Callable[[], bool], timeout_s: float = WAIT_S) -> float:
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


RUNNERS_GONE_S = 10.0
"""``ray.kill`` returns before the actor is gone: a killed runner's name leaves Ray's
list of named actors shortly after, not at once."""


def _no_runners_left(gangs: RayGangs, job_id: int) -> None:
    _wait(f"no runner of {job_id} left", lambda: gangs.runner_names(job_id) == [], RUNNERS_GONE_S)


def _poll_until_ended(executor: RayGangs, gang: RayGang) -> list[ReplicaStatus]:
    statuses: list[ReplicaStatus] = []

    def ended() -> bool:
        statuses[:] = executor.poll(gang)
        return all(s.state.terminal for s in statuses)

    _wait(f"gang {gang.job_id} to end", ended)
    return statuses


def _seen(out: Path, rank: int) -> dict[str, object]:
    return json.loads((out / f"replica-{rank}.json").read_text())


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        out.append(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return out


def _starter(seen: dict[str, object]) -> int:
    """The process that started a replica's supervisor (its runner), from the handle the
    supervisor keeps in its run directory (named on its command line)."""
    run_dir = Path(seen["supervisor_argv"][6])  # type: ignore[index]
    return int(json.loads((run_dir / "supervisor.json").read_text())["starter"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_ray_workers_become_mosu_nodes_by_label_and_resource(executor: RayGangs) -> None:
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
    executor: RayGangs, ray_cluster: RayCluster, script: Path, tmp_path: Path
) -> None:
    gpus = (0, 1, 2, 3)
    spec = _spec(
        101,
        script,
        tmp_path,
        "exit,exit",
        ReplicaPlacement("w0", gpus),
        ReplicaPlacement("w1", gpus),
    )
    executor.keep_ended_runners = True  # their processes tell where the replicas ran
    try:
        gang = executor.start(spec)
        statuses = _poll_until_ended(executor, gang)
        starters = [_ancestors(_starter(_seen(tmp_path, rank))) for rank in (0, 1)]
    finally:
        executor.keep_ended_runners = False
    executor.release(gang)

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
            "MOSU_JOB_ID": "101",
            "MOSU_REPLICA": str(rank),
            "MOSU_NUM_REPLICAS": "2",
            "MOSU_NODE": node,
            "MOSU_GPUS_PER_REPLICA": "4",
            "FROM_JOB": "yes",
        }
        # The replica's supervisor was started by a runner of that node's Ray processes.
        assert ray_cluster.nodes[node].pid in starters[rank]
        log = executor.log_path(101, rank).read_text()
        assert f"hello from rank {rank} on {node}" in log
    assert 1024 <= gang.master_port <= 65535
    _no_runners_left(executor, 101)


def test_failing_replica_is_reported_with_its_exit_code(
    executor: RayGangs, script: Path, tmp_path: Path
) -> None:
    spec = _spec(102, script, tmp_path, "fail", ReplicaPlacement("w1", (2,)))
    gang = executor.start(spec)
    statuses = _poll_until_ended(executor, gang)

    assert [(s.state, s.exit_code, s.message) for s in statuses] == [
        (ReplicaState.FAILED, 3, "exit code 3")
    ]
    assert _seen(tmp_path, 0)["CUDA_VISIBLE_DEVICES"] == "2"


def test_stop_lets_a_trapping_replica_checkpoint_and_kills_one_that_ignores_sigterm(
    executor: RayGangs, script: Path, tmp_path: Path
) -> None:
    spec = _spec(
        103,
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
    _no_runners_left(executor, 103)
    assert executor.stop(gang, grace_s=grace_s) == statuses  # stopping twice is harmless


def test_gang_start_is_all_or_nothing(executor: RayGangs, script: Path, tmp_path: Path) -> None:
    spec = _spec(
        104,
        script,
        tmp_path,
        "sleep,sleep",
        ReplicaPlacement("w0", (0,)),
        ReplicaPlacement("w1", (7,)),  # w1 has GPUs 0..3 only
    )
    with pytest.raises(
        GangStartError, match=r"replica 1 on w1 did not start: .*GPU indices \[7\]"
    ) as err:
        executor.start(spec)

    assert err.value.requeue is True  # a stale placement: the job waits for another

    _no_runners_left(executor, 104)
    started = tmp_path / "replica-0.json"
    if started.exists():  # replica 0 may have started before replica 1 refused
        assert not _pid_alive(int(_seen(tmp_path, 0)["pid"]))


def test_missing_command_fails_the_gang_instead_of_requeueing_it(
    executor: RayGangs, tmp_path: Path
) -> None:
    spec = gang_launch(105, [str(tmp_path / "no-such-program")], ReplicaPlacement("w0", (0,)))
    with pytest.raises(GangStartError, match="no-such-program: No such file or directory") as err:
        executor.start(spec)

    assert err.value.requeue is False
    _no_runners_left(executor, 105)


def test_unknown_node_is_refused_before_anything_starts(
    executor: RayGangs, script: Path, tmp_path: Path
) -> None:
    spec = _spec(106, script, tmp_path, "exit", ReplicaPlacement("w9", (0,)))
    with pytest.raises(GangStartError, match="replica 0's node 'w9' is not in the Ray cluster"):
        executor.start(spec)
    _no_runners_left(executor, 106)


# --- the platform's executor (what the scheduling loop calls) ----------------------------


@pytest.fixture
def platform_executor(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> RayExecutor:
    return RayExecutor(
        address=ray_cluster.address,
        instance="test",
        remote_log_dir=str(tmp_path_factory.mktemp("node-logs")),
        failure_grace_s=2.0,
        poll_every_s=0.0,
        call_timeout_s=5.0,
        start_timeout_s=45.0,
    )


def _launch(job_id: int, script: Path, out: Path, modes: str, *nodes: str) -> JobLaunch:
    return JobLaunch(
        job_id=job_id,
        attempt=2,
        tenant="acme",
        argv=replica_command(script, modes, out),
        env={"FROM_JOB": "yes"},
        workdir=str(out),
        replicas=[
            ReplicaLaunch(
                replica=i,
                node=node,
                gpu_indices=[0, 1, 2, 3],
                gpu_milli=1000,
                log_path=str(out / "logs" / f"replica-{i}.log"),
            )
            for i, node in enumerate(nodes)
        ],
    )


def _next_exit(executor: RayExecutor, timeout_s: float = WAIT_S) -> JobExit:
    found: list[JobExit] = []

    def exited() -> bool:
        found.extend(executor.poll())
        return bool(found)

    _wait("an exit report", exited, timeout_s)
    assert len(found) == 1
    return found[0]


def test_platform_executor_runs_a_launch_and_reports_one_exit_per_attempt(
    platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    pids = platform_executor.start(_launch(11, script, tmp_path, "exit,exit", "w0", "w1"))
    report = _next_exit(platform_executor)

    assert report.model_dump() == {
        "job_id": 11,
        "attempt": 2,
        "exit_code": 0,
        "message": "",
        "lost": False,
        "checkpoint": None,
    }
    assert {k: v.pid for k, v in pids.items()} == {r: _seen(tmp_path, r)["pid"] for r in (0, 1)}
    assert [_seen(tmp_path, r)["MOSU_ATTEMPT"] for r in (0, 1)] == ["2", "2"]
    assert _seen(tmp_path, 0)["MOSU_GPU_FRACTION"] is None
    log = (tmp_path / "logs" / "replica-1.log").read_text()
    assert log.startswith("--- mosu: attempt 2, node w1, GPUs 0,1,2,3 ---\n")
    assert "hello from rank 1 on w1" in log
    assert platform_executor.poll() == []


def test_platform_executor_tells_a_replica_its_share_of_a_gpu(
    platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    launch = _launch(16, script, tmp_path, "exit", "w0")
    launch.replicas[0].gpu_indices = [1]
    launch.replicas[0].gpu_milli = 500
    platform_executor.start(launch)

    assert _next_exit(platform_executor).exit_code == 0
    seen = _seen(tmp_path, 0)
    assert (seen["CUDA_VISIBLE_DEVICES"], seen["MOSU_GPU_FRACTION"]) == ("1", "0.5")


def test_platform_executor_stops_the_gang_when_one_replica_fails(
    platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    platform_executor.start(_launch(12, script, tmp_path, "sleep,fail", "w0", "w1"))
    report = _next_exit(platform_executor)

    assert (report.exit_code, report.message, report.lost) == (
        3,
        "replica 1 on w1: exit code 3",
        False,
    )
    assert not _pid_alive(int(_seen(tmp_path, 0)["pid"]))


def test_platform_stop_returns_at_once_and_the_runners_escalate_to_sigkill(
    platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    platform_executor.start(_launch(13, script, tmp_path, "trap,ignore", "w0", "w1"))
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )
    began = time.monotonic()
    platform_executor.stop(13, grace_s=3.0)
    # Stopping only sends SIGTERM; it must not hold the scheduling loop for the grace period.
    assert time.monotonic() - began < 3.0
    report = _next_exit(platform_executor)

    assert (tmp_path / "checkpoint-0").read_text() == "step 42"
    assert not _pid_alive(int(_seen(tmp_path, 1)["pid"]))
    assert report.exit_code is None and report.lost is False
    assert report.message == "replica 1 on w1: killed by SIGKILL"


def test_platform_executor_asks_a_gang_for_a_checkpoint_and_sees_every_replica_answer(
    platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    platform_executor.start(_launch(17, script, tmp_path, "usr1,usr1", "w0", "w1"))
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )
    platform_executor.poll()
    before = platform_executor.checkpoints()[17]
    assert (before.at, before.requested, before.answered) == (None, False, False)
    began = time.time()
    assert platform_executor.request_checkpoint(17, "SIGUSR1")

    def answered() -> bool:
        platform_executor.poll()
        return platform_executor.checkpoints()[17].answered

    _wait("the gang's checkpoint", answered)
    assert all((tmp_path / f"asked-{r}").exists() for r in (0, 1))
    report = platform_executor.checkpoints()[17]
    assert report.at is not None and began - 1 <= report.at <= time.time()
    platform_executor.stop(17, grace_s=0.0)
    ended = _next_exit(platform_executor)
    assert ended.checkpoint is not None and ended.checkpoint.answered
    assert not platform_executor.request_checkpoint(17, "SIGUSR1")


def _record(launch: JobLaunch) -> AttemptRecord:
    return AttemptRecord(
        job_id=launch.job_id,
        attempt=launch.attempt,
        tenant=launch.tenant,
        replicas=[
            ReplicaRecord(replica=r.replica, node=r.node, log_path=r.log_path)
            for r in launch.replicas
        ],
    )


def test_a_new_controller_reattaches_to_the_gangs_its_predecessor_left(
    ray_cluster: RayCluster, platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    launch = _launch(14, script, tmp_path, "trap,trap", "w0", "w1")
    started = platform_executor.start(launch)
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )
    platform_executor.detach()  # the controller goes away; its runners stay
    remote = platform_executor.gangs.remote_log_dir
    successor = RayExecutor(
        address=ray_cluster.address,
        instance="test",
        remote_log_dir=remote,
        poll_every_s=0.0,
        call_timeout_s=5.0,
    )
    other = RayExecutor(address=ray_cluster.address, instance="another", call_timeout_s=5.0)
    assert other.adopt([]).running == {}, "another store's controller sees none of them"

    live = successor.adopt([_record(launch)]).running
    assert {k: v.pid for k, v in live[14].items()} == {k: v.pid for k, v in started.items()}
    assert {k: v.supervisor for k, v in live[14].items()} == {
        k: v.supervisor for k, v in started.items()
    }
    assert successor.poll() == []
    for r in (0, 1):
        assert _pid_alive(int(_seen(tmp_path, r)["pid"])), "re-attaching touched nothing"
    successor.stop(14, grace_s=3.0)
    report = _next_exit(successor)
    assert (report.job_id, report.attempt, report.exit_code, report.lost) == (14, 2, 0, False)
    assert [(tmp_path / f"checkpoint-{r}").read_text() for r in (0, 1)] == ["step 42"] * 2
    log = (tmp_path / "logs" / "replica-0.log").read_text()
    assert log.count("hello from rank 0 on w0") == 1, "the log goes on, nothing copied twice"
    successor.poll()  # the end is recorded: its runners go
    _no_runners_left(successor.gangs, 14)


def test_a_new_controller_stops_a_gang_with_a_runner_gone_and_removes_stale_runners(
    ray_cluster: RayCluster, platform_executor: RayExecutor, script: Path, tmp_path: Path
) -> None:
    import ray

    doomed = _launch(17, script, tmp_path / "a", "sleep,sleep", "w0", "w1")
    stale = _launch(18, script, tmp_path / "b", "sleep", "w0")
    # Runners hold their GPUs in Ray: the two gangs on w0 get GPUs of their own.
    doomed.replicas[0].gpu_indices = [0, 1]
    stale.replicas[0].gpu_indices = [2, 3]
    for launch in (doomed, stale):
        Path(launch.argv[-1]).mkdir(mode=0o1777)
        Path(launch.argv[-1]).chmod(0o1777)
        platform_executor.start(launch)
    started = [tmp_path / "a" / "replica-0.json", tmp_path / "a" / "replica-1.json"]
    started.append(tmp_path / "b" / "replica-0.json")
    _wait("replicas to start", lambda: all(p.exists() for p in started))
    platform_executor.detach()
    gangs = platform_executor.gangs
    ray.kill(ray.get_actor(gangs.runner_names(17)[1], namespace=gangs.namespace))
    _wait("the killed runner to go", lambda: len(gangs.runner_names(17)) == 1, RUNNERS_GONE_S)

    successor = RayExecutor(
        address=ray_cluster.address, instance="test", poll_every_s=0.0, call_timeout_s=5.0
    )
    # The store says job 17 runs and 18 has ended (its end recorded before the failover).
    found = successor.adopt([_record(doomed)])
    assert (found.running, found.unstarted) == ({}, [])
    [report] = successor.poll()
    assert (report.job_id, report.lost, report.exit_code) == (17, True, None)
    _no_runners_left(successor.gangs, 17)
    _no_runners_left(successor.gangs, 18)
    for out, r in ((tmp_path / "a", 0), (tmp_path / "a", 1), (tmp_path / "b", 0)):
        _wait("its replica to end", lambda out=out, r=r: not _pid_alive(int(_seen(out, r)["pid"])))


def test_killed_worker_node_is_detected_and_the_gang_reported_lost(
    platform_executor: RayExecutor, ray_cluster: RayCluster, script: Path, tmp_path: Path
) -> None:
    """Runs last: it kills worker w1 for good."""
    platform_executor.start(_launch(15, script, tmp_path, "sleep,sleep", "w0", "w1"))
    _wait(
        "both replicas to start",
        lambda: all((tmp_path / f"replica-{r}.json").exists() for r in (0, 1)),
    )

    ray_cluster.kill_node("w1")
    killed = time.monotonic()
    report = _next_exit(platform_executor, timeout_s=30.0)
    took = time.monotonic() - killed
    print(f"dead node detected and the gang stopped {took:.1f}s after the kill")

    assert (report.job_id, report.exit_code, report.lost) == (15, None, True)
    # Usually "node w1 is down"; the runner's own death notice may be seen first.
    assert report.message.startswith("replica 1 lost: ") and "node" in report.message
    assert {r.node.name: r.node.state for r in platform_executor.cluster_nodes()} == {
        "w0": NodeState.READY,
        "w1": NodeState.DOWN,
    }
    # The survivor was stopped (a gang dies together); the replica on the dead node died
    # with its runner instead of running on where nobody accounts for its GPUs.
    for r in (0, 1):
        assert not _pid_alive(int(_seen(tmp_path, r)["pid"]))
