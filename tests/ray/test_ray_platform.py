"""End to end on a real Ray cluster: ``mosu up --executor ray`` schedules gangs onto Ray
nodes, shows their logs, and requeues a gang whose node dies.

The server is a real ``mosu up`` process; it learns the nodes from Ray (w0 and w1, 4
H800 each), the engine places every replica and the Ray executor runs it there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mosu.core.api import JobSpec, JobState, QuotaSpec
from mosu.core.models import NodeState
from tests.e2e.conftest import OPERATOR_TOKEN, Server, free_port, state_history, wait_for
from tests.jobs import shared_copy

from .conftest import GPU_TYPE, REPLICA_SCRIPT, RayCluster, replica_command

pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    """acme is promised 4 GPUs and may borrow up to all 8; beta is promised 4."""
    with server.client() as op:
        acme = op.create_tenant("acme", {GPU_TYPE: QuotaSpec(guaranteed=4, limit=8)})
        beta = op.create_tenant("beta", {GPU_TYPE: QuotaSpec(guaranteed=4)})
    return {"acme": acme.token, "beta": beta.token}


def _seen(out: Path, rank: int) -> dict | None:
    path = out / f"replica-{rank}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ray_address(replica: dict) -> str:
    """The address Ray's control store gives the node a replica ran on."""
    import ray

    by_label = {n["Labels"].get("mosu.io/node"): n for n in ray.nodes() if n["Alive"]}
    return str(by_label[replica["MOSU_NODE"]]["NodeManagerAddress"])


def _gang(name: str, out: Path, modes: str) -> JobSpec:
    script = shared_copy(REPLICA_SCRIPT, out)
    return JobSpec(
        name=name,
        replicas=2,
        gpus=4,
        gpu_type=GPU_TYPE,
        command=replica_command(script, modes, out),
    )


def test_ray_nodes_are_mirrored_into_the_store(server: Server) -> None:
    with server.client() as op:
        nodes = wait_for(
            lambda: len(op.list_nodes()) == 2 and op.list_nodes(),
            timeout=30,
            what="the Ray nodes in the store",
        )
    assert [(n.name, n.gpu_type, n.gpus, n.rack, n.state) for n in nodes] == [
        ("w0", GPU_TYPE, 4, "rack-w0", NodeState.READY),
        ("w1", GPU_TYPE, 4, "rack-w1", NodeState.READY),
    ]


def test_gang_runs_across_both_ray_nodes_and_its_logs_reach_the_server(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    with server.client(tokens["acme"]) as c:
        job = c.submit(_gang("ddp", tmp_path, "exit,exit"))
        done = wait_for(
            lambda: (j := c.get_job(job.id)).state in (JobState.SUCCEEDED, JobState.FAILED) and j,
            timeout=90,
            what="the gang to finish",
        )
        assert (done.state, done.message) == (JobState.SUCCEEDED, "")
        seen = [_seen(tmp_path, r) for r in (0, 1)]
        assert seen[0] is not None and seen[1] is not None
        assert sorted(s["MOSU_NODE"] for s in seen) == ["w0", "w1"]
        for rank, s in enumerate(seen):
            assert (s["RANK"], s["WORLD_SIZE"], s["CUDA_VISIBLE_DEVICES"]) == (
                str(rank),
                "2",
                "0,1,2,3",
            )
            assert s["MOSU_JOB_ID"] == str(job.id)
        # Replica 0's node as the Ray cluster knows it (the address other nodes reach it
        # at; Ray itself resolves a node started on 127.0.0.1 to the machine's address).
        assert seen[0]["MASTER_ADDR"] == seen[1]["MASTER_ADDR"] == _ray_address(seen[0])
        assert seen[0]["MASTER_PORT"] == seen[1]["MASTER_PORT"]
        for rank in (0, 1):
            text = c.logs(job.id, replica=rank).data
            assert f"hello from rank {rank} on {seen[rank]['MOSU_NODE']}" in text


def test_cancel_gives_the_gang_its_grace_period_to_checkpoint(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    with server.client(tokens["acme"]) as c:
        job = c.submit(_gang("trap", tmp_path, "trap,trap"))
        wait_for(lambda: _seen(tmp_path, 0) and _seen(tmp_path, 1), timeout=60, what="start")
        c.cancel(job.id)
        wait_for(
            lambda: c.get_job(job.id).state == JobState.CANCELLED, timeout=30, what="cancelled"
        )
        assert (tmp_path / "checkpoint-0").read_text() == "step 42"
        assert (tmp_path / "checkpoint-1").read_text() == "step 42"


def test_borrowed_gang_is_preempted_for_its_owner_after_a_checkpoint(
    server: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    borrower_out, owner_out = tmp_path / "acme", tmp_path / "beta"
    borrower_out.mkdir(mode=0o1777)
    owner_out.mkdir(mode=0o1777)
    borrower_out.chmod(0o1777)
    owner_out.chmod(0o1777)
    with server.client(tokens["acme"]) as acme, server.client(tokens["beta"]) as beta:
        big = acme.submit(_gang("big", borrower_out, "trap,trap"))
        wait_for(
            lambda: _seen(borrower_out, 0) and _seen(borrower_out, 1),
            timeout=60,
            what="acme's gang on all 8 GPUs",
        )
        small = beta.submit(
            JobSpec(
                name="small",
                gpus=4,
                gpu_type=GPU_TYPE,
                command=replica_command(shared_copy(REPLICA_SCRIPT, owner_out), "sleep", owner_out),
            )
        )
        # beta's promised GPUs come back: acme's gang checkpoints, goes back to the queue.
        wait_for(lambda: _seen(owner_out, 0), timeout=60, what="beta's job to start")
        assert (borrower_out / "checkpoint-0").read_text() == "step 42"
        assert (borrower_out / "checkpoint-1").read_text() == "step 42"
        assert beta.get_job(small.id).state == JobState.RUNNING
        requeued = acme.get_job(big.id)
        assert (requeued.state, requeued.attempts) == (JobState.PENDING, 1)
        assert state_history(acme, big.id)[-2:] == [
            "preempted",
            "pending",
        ]
        acme.cancel(big.id)
        beta.cancel(small.id)
        wait_for(lambda: beta.get_job(small.id).state == JobState.CANCELLED, timeout=30, what="end")


def test_each_ray_node_reports_the_sandbox_its_replicas_run_in(server: Server) -> None:
    want = "users" if os.geteuid() == 0 else "bwrap"
    with server.client() as op:
        wait_for(
            lambda: [n.sandbox for n in op.list_nodes()] == [want, want],
            timeout=30,
            what="both nodes to report their sandbox",
        )


def test_a_failover_reattaches_to_running_gangs_instead_of_restarting_them(
    ray_cluster: RayCluster, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``mosu up --executor ray`` is killed with SIGKILL under a running gang; the next
    server on the same store re-attaches to its runners: same attempt, same processes,
    the log goes on, and a cancel still reaches every replica."""
    home = tmp_path_factory.mktemp("failover")
    env = dict(os.environ)
    env.update(
        MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN,
        MOSU_CONFIG=str(home / "client.json"),
        MOSU_POLL_S="0.05",
        MOSU_TICK_S="0.5",
        MOSU_RAY_LOG_DIR=str(home / "node-logs"),
    )
    args = ["--executor", "ray", "--ray-address", ray_cluster.address, "--grace", "5"]
    first = Server(data_dir=home / "data", port=free_port(), args=args, env=env)
    second = Server(data_dir=home / "data", port=free_port(), args=args, env=env)
    first.start()
    try:
        with first.client() as op:
            wait_for(lambda: len(op.list_nodes()) == 2, timeout=30, what="nodes")
            token = op.create_tenant("acme", {GPU_TYPE: QuotaSpec(guaranteed=8)}).token
        with first.client(token) as c:
            job = c.submit(_gang("long", tmp_path, "trap,trap"))
            wait_for(lambda: _seen(tmp_path, 0) and _seen(tmp_path, 1), timeout=60, what="start")
            pids = [_seen(tmp_path, r)["pid"] for r in (0, 1)]
            wait_for(
                lambda: "hello from rank 1" in c.logs(job.id, replica=1).data,
                timeout=30,
                what="output copied to the server",
            )
        first.kill9()
        second.start()
        with second.client(token) as c:
            # Give the new controller time to adopt; nothing restarts meanwhile.
            wait_for(
                lambda: any(e.kind == "adopted" for e in c.job_events(job.id)),
                timeout=30,
                what="the gang adopted",
            )
            got = c.get_job(job.id)
            assert (got.state, got.attempts) == (JobState.RUNNING, 1)
            assert [a.pid for a in got.allocations] == pids
            assert all(Path(f"/proc/{pid}").exists() for pid in pids)
            c.cancel(job.id)
            wait_for(
                lambda: c.get_job(job.id).state == JobState.CANCELLED,
                timeout=60,
                what="the adopted gang cancelled",
            )
            assert [(tmp_path / f"checkpoint-{r}").read_text() for r in (0, 1)] == ["step 42"] * 2
            assert state_history(c, job.id) == ["pending", "starting", "running", "cancelled"]
            log = c.logs(job.id, replica=1).data
            assert log.count("hello from rank 1") == 1
    finally:
        first.stop()
        second.stop()


def test_gang_on_a_dead_node_is_requeued_and_the_node_marked_down(
    server: Server, tokens: dict[str, str], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """Runs last: it kills worker w1 for good."""
    with server.client(tokens["acme"]) as c, server.client() as op:
        job = c.submit(_gang("doomed", tmp_path, "sleep,sleep"))
        wait_for(lambda: _seen(tmp_path, 0) and _seen(tmp_path, 1), timeout=60, what="start")
        assert c.get_job(job.id).state == JobState.RUNNING

        ray_cluster.kill_node("w1")

        wait_for(
            lambda: {n.name: n.state for n in op.list_nodes()}.get("w1") == NodeState.DOWN,
            timeout=30,
            what="w1 down in the store",
        )
        requeued = wait_for(
            lambda: (j := c.get_job(job.id)).state == JobState.PENDING and j,
            timeout=30,
            what="the gang requeued",
        )
        assert requeued.attempts == 1
        states = [e.to_state for e in c.job_events(job.id) if e.kind == "state"]
        assert states[-2:] == ["preempted", "pending"]
        c.cancel(job.id)
