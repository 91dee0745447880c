"""``--executor simulated``'s command line: its nodes appear in the store, and a missing
or malformed ``--nodes`` is one line naming the flag."""

from __future__ import annotations

from mosu.client import Client
from mosu.core.api import JobSpec, QuotaSpec
from tests.cli.test_platform_cli import cli_env, mosu, mosu_process, one_line_error  # noqa: F401
from tests.e2e.conftest import free_port, make_server, wait_for  # noqa: F401


def test_bad_nodes_are_one_line(cli_env, tmp_path):  # noqa: F811
    args = ["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())]
    for extra, fragment in (
        (["--executor", "simulated"], "needs --nodes"),
        (["--executor", "simulated", "--nodes", "10x8"], "bad cluster spec '10x8'"),
        (["--nodes", "10x8:H800"], "only the simulated executor takes --nodes"),
    ):
        one_line_error(mosu_process(*args, *extra, env=cli_env), "--nodes", fragment)


def test_simulated_nodes_are_registered_and_lost_on_demand(make_server):  # noqa: F811
    server = make_server(
        "--executor", "simulated", "--nodes", "30x8:H800", "--nodes", "2x4:A100",
        "--min-runtime", "0",
    )  # fmt: skip

    with server.client() as op:
        nodes = wait_for(
            lambda: op.list_nodes() if len(op.list_nodes()) == 32 else None,
            timeout=30,
            what="32 simulated nodes",
        )
    by_type = {}
    for n in nodes:
        by_type[n.gpu_type] = by_type.get(n.gpu_type, 0) + n.gpus
    assert by_type == {"H800": 240, "A100": 8}
    assert all(n.state == "ready" for n in nodes)

    with server.client() as op:
        token = op.create_tenant("a", {"H800": QuotaSpec(guaranteed=240)}).token
    with Client(server.url, token, timeout=10) as a:
        job = a.submit(JobSpec(name="long", gpus=8, command="sleep 600"))
        first = wait_for(
            lambda: a.get_job(job.id) if a.get_job(job.id).state == "running" else None,
            timeout=30,
            what="the job to run",
        )
        lost = first.allocations[0].node
        (server.data_dir / "simulated-down").write_text(lost + "\n")
        again = wait_for(
            lambda: (
                (j := a.get_job(job.id)).state == "running"
                and j.attempts >= 2
                and j.allocations[0].node != lost
                and j
            ),
            timeout=30,
            what="the job to run again elsewhere",
        )
        # Until the store has mirrored the node as down, a placement on it is refused
        # at the start and requeued: one attempt, or a few, before it runs elsewhere.
        assert again.allocations[0].node != lost
    with server.client() as op:
        states = {n.name: n.state for n in op.list_nodes()}
    assert states[lost] == "down"
    assert sum(s == "down" for s in states.values()) == 1
