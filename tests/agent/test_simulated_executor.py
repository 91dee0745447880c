"""The simulated executor on its own (an injected clock) and behind a real platform:
durations and codes by the documented convention, stops, lost nodes, adoption."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosu.agent.executors.simulated import SimulatedExecutor, SimulatedRun, simulated_run
from mosu.core.api import JobExit, JobLaunch, ReplicaLaunch
from mosu.core.executor import AttemptRecord, LaunchError, ReplicaRecord
from mosu.core.models import Node, NodeState
from mosu.service.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def launch(
    job_id: int,
    command: str | list[str] = "sleep 10",
    *,
    nodes: tuple[str, ...] = ("n0",),
    env: dict[str, str] | None = None,
    estimate_s: float | None = None,
    attempt: int = 1,
) -> JobLaunch:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
    return JobLaunch(
        job_id=job_id,
        attempt=attempt,
        tenant="a",
        argv=argv,
        env=env or {},
        workdir=None,
        estimate_s=estimate_s,
        replicas=[
            ReplicaLaunch(replica=i, node=n, gpu_indices=[0], gpu_milli=1000, log_path="")
            for i, n in enumerate(nodes)
        ],
    )


NODES = [
    Node(name=f"n{i}", gpu_type="H800", gpus=8, cpu_milli=1000, mem_mib=1024) for i in range(3)
]


@pytest.mark.parametrize(
    ("command", "env", "estimate", "expected"),
    [
        ("sleep 5", {}, None, SimulatedRun(5.0, 0)),
        ("sleep 2.5; exit 3", {}, None, SimulatedRun(2.5, 3)),
        ("sleep 1 && exit 300", {}, None, SimulatedRun(1.0, 300 & 0xFF)),
        ("exit 7", {}, None, SimulatedRun(0.0, 7)),
        ("false", {}, None, SimulatedRun(0.0, 1)),
        ("python train.py", {}, 120.0, SimulatedRun(120.0, 0)),
        ("python train.py", {}, None, SimulatedRun(60.0, 0)),
        (
            "python train.py",
            {"SIMULATED_DURATION": "9", "SIMULATED_EXIT": "2"},
            5.0,
            SimulatedRun(9.0, 2),
        ),
        ("sleep 5", {"SIMULATED_DURATION": "1"}, None, SimulatedRun(1.0, 0)),
        (["sleep", "4"], {}, None, SimulatedRun(4.0, 0)),
    ],
)
def test_duration_and_exit_code_follow_the_convention(
    command: str | list[str], env: dict[str, str], estimate: float | None, expected: SimulatedRun
) -> None:
    assert simulated_run(launch(1, command, env=env, estimate_s=estimate)) == expected


def test_runs_end_on_the_injected_clock_and_stops_end_them_now() -> None:
    clock = Clock()
    ex = SimulatedExecutor(NODES, clock=clock)
    started = ex.start(launch(1, "sleep 10", nodes=("n0", "n1")))
    assert sorted(started) == [0, 1]
    ex.start(launch(2, "sleep 5; exit 4"))
    ex.start(launch(3, "sleep 100"))
    clock.now += 4.9
    assert ex.poll() == []
    clock.now += 0.1
    assert ex.poll() == [JobExit(job_id=2, attempt=1, exit_code=4, message="exit code 4")]
    ex.stop(3, grace_s=30)
    assert ex.poll() == [JobExit(job_id=3, attempt=1, exit_code=None, message="killed by SIGTERM")]
    clock.now += 5
    assert ex.poll() == [JobExit(job_id=1, attempt=1, exit_code=0)]
    assert ex.poll() == [] and ex.running == 0


def test_a_lost_node_loses_its_attempts_goes_down_and_refuses_starts(tmp_path: Path) -> None:
    clock = Clock()
    down = tmp_path / "down"
    ex = SimulatedExecutor(NODES, clock=clock, down_file=down)
    ex.start(launch(1, nodes=("n0", "n1")))
    ex.start(launch(2, nodes=("n2",)))
    ex.lose_node("n1")
    exits = ex.poll()
    assert [(e.job_id, e.lost, e.exit_code) for e in exits] == [(1, True, None)]
    assert "n1" in exits[0].message
    states = {r.node.name: r.node.state for r in ex.cluster_nodes()}
    assert states == {"n0": NodeState.READY, "n1": NodeState.DOWN, "n2": NodeState.READY}
    with pytest.raises(LaunchError) as refused:
        ex.start(launch(3, nodes=("n1",)))
    assert refused.value.requeue
    down.write_text("n2\n")  # the operator's hook: a node name per line
    assert [(e.job_id, e.lost) for e in ex.poll()] == [(2, True)]
    ex.restore_node("n1")
    down.write_text("")
    assert all(r.node.state == NodeState.READY for r in ex.cluster_nodes())


def test_adopt_reports_started_attempts_lost_and_leaves_unstarted_ones() -> None:
    ex = SimulatedExecutor(NODES, clock=Clock())
    started = AttemptRecord(
        job_id=1,
        attempt=2,
        tenant="a",
        replicas=[ReplicaRecord(replica=0, node="n0", supervisor="sim:1.2.0", pid=5)],
    )
    unstarted = AttemptRecord(
        job_id=2, attempt=1, tenant="a", replicas=[ReplicaRecord(replica=0, node="n0")]
    )
    found = ex.adopt([started, unstarted])
    assert found.running == {} and found.unstarted == [2]
    assert [(e.job_id, e.attempt, e.lost) for e in ex.poll()] == [(1, 2, True)]


def test_a_lost_node_goes_down_in_the_store_and_its_job_is_requeued(tmp_path: Path) -> None:
    from mosu.core.api import JobSpec, QuotaSpec, TenantCreate
    from mosu.core.submission import Submission
    from mosu.service.platform import Platform
    from mosu.service.services import jobs as job_service
    from mosu.service.services import nodes, tenants
    from mosu.service.services.auth import OPERATOR

    clock = Clock()
    ex = SimulatedExecutor(NODES[:2], clock=clock)
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'm.db'}",
        operator_token="mosu_op_sim-test",
        tick_s=0,
        grace_s=0,
        min_runtime_s=0,
    )
    p = Platform(settings, ex)
    p.open()
    try:
        with p.tx() as s:
            tenants.create_tenant(
                s,
                principal=OPERATOR,
                body=TenantCreate(name="a", quotas={"H800": QuotaSpec(guaranteed=16)}),
            )
        p.loop.run_once()  # mirrors the two nodes
        with p.tx() as s:
            job = job_service.submit(
                s,
                principal=OPERATOR,
                tenant="a",
                job=Submission.of(
                    JobSpec(name="j", gpus=8, command="python train.py", estimate=50)
                ),
            )
        p.loop.run_once()
        p.loop.run_once()
        with p.tx() as s:
            running = job_service.get_job(s, principal=OPERATOR, job_id=job.id)
        assert running.state == "running"
        lost = running.allocations[0].node
        ex.lose_node(lost)
        for _ in range(4):
            p.loop.run_once()
        with p.tx() as s:
            after = job_service.get_job(s, principal=OPERATOR, job_id=job.id)
        assert after.attempts == 2 and after.state == "running"
        assert {a.node for a in after.allocations} == {"n0", "n1"} - {lost}
        with p.tx() as s:
            down = [n.name for n in nodes.list_nodes(s, principal=OPERATOR) if n.state == "down"]
        assert down == [lost]
        clock.now += 50  # its estimate: without one it would run 60 s
        for _ in range(3):
            p.loop.run_once()
        with p.tx() as s:
            assert job_service.get_job(s, principal=OPERATOR, job_id=job.id).state == "succeeded"
    finally:
        p.close()


def test_a_simulated_job_reports_the_checkpoint_it_is_asked_for_when_its_env_says():
    clock = Clock()
    wall = Clock()
    wall.now = 1_000_000.0
    ex = SimulatedExecutor(NODES, clock=clock, wall=wall)
    ex.start(launch(1, "sleep 100", env={"SIMULATED_CHECKPOINT_S": "4"}))
    ex.start(launch(2, "sleep 100", nodes=("n1",), env={"SIMULATED_CHECKPOINT_S": "-1"}))
    assert ex.checkpoints()[1].model_dump() == {
        "attempt": 1,
        "at": None,
        "requested": False,
        "answered": False,
    }
    assert ex.request_checkpoint(1, "SIGUSR1") and ex.request_checkpoint(2, "SIGUSR1")
    clock.now += 3
    assert not ex.checkpoints()[1].answered
    clock.now += 2
    wall.now += 5
    saved = ex.checkpoints()[1]
    assert (saved.answered, saved.at) == (True, 1_000_000.0 + 4)
    assert ex.checkpoints()[2].requested and not ex.checkpoints()[2].answered
    ex.stop(1, 0.0)
    ex.stop(2, 0.0)
    ended = {e.job_id: e for e in ex.poll()}
    assert ended[1].checkpoint == saved
    assert ended[2].checkpoint is not None and ended[2].checkpoint.at is None
    assert not ex.request_checkpoint(1, "SIGUSR1"), "nothing runs to ask"
