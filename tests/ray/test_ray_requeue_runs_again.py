"""A gang whose Ray worker node dies is requeued, waits while the cluster is too small
for it, and runs again to success once the node is back; the attempt that was cut short
is never reported as succeeded.

The gang needs both workers (2 replicas x 4 GPUs). Attempt 1 runs until it is stopped;
attempt 2 exits 0 at once. Each replica records its attempt, rank and node.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mosu.core.api import JobSpec, JobState, QuotaSpec
from mosu.core.models import NodeState
from tests.e2e.conftest import REQUEUED_ONCE_THEN_SUCCEEDED, Server, state_history, wait_for
from tests.jobs import JOB_PYTHON

from .conftest import GPU_TYPE, RayCluster

pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")

REQUEUE_LIMIT_S = 30.0
RUN_AGAIN_LIMIT_S = 120.0

# Runs with ``python -S -c`` on the Ray node: stdlib only.
REPLICA_CODE = """
import json, os, sys, time
out = sys.argv[1]
attempt, rank = os.environ["MOSU_ATTEMPT"], os.environ["RANK"]
seen = {"node": os.environ["MOSU_NODE"], "pid": os.getpid()}
# Written whole, then renamed: the test polls for the file and must not read it half written.
path = os.path.join(out, f"run-{attempt}-{rank}.json")
with open(path + ".tmp", "w") as f:
    json.dump(seen, f)
os.replace(path + ".tmp", path)
if attempt == "1":
    deadline = time.monotonic() + 120  # until stopped; never outlive a broken run for long
    while time.monotonic() < deadline:
        time.sleep(0.1)
    sys.exit(0)
open(os.path.join(out, f"done-{attempt}-{rank}"), "w").close()
"""


def _runs(out: Path, attempt: int) -> dict[int, dict]:
    return {
        rank: json.loads(path.read_text())
        for rank in (0, 1)
        if (path := out / f"run-{attempt}-{rank}.json").exists()
    }


@pytest.mark.slow
def test_gang_on_a_killed_node_is_requeued_and_runs_again_when_the_node_returns(
    server: Server, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    with server.client() as op:
        wait_for(lambda: len(op.list_nodes()) == 2, timeout=30, what="both Ray workers")
        token = op.create_tenant("acme", {GPU_TYPE: QuotaSpec(guaranteed=8)}).token
    spec = JobSpec(
        name="gang",
        replicas=2,
        gpus=4,
        gpu_type=GPU_TYPE,
        command=[JOB_PYTHON, "-S", "-c", REPLICA_CODE, str(tmp_path)],
    )
    with server.client(token) as c, server.client() as op:
        job = c.submit(spec)
        first = wait_for(lambda: len(_runs(tmp_path, 1)) == 2, timeout=60, what="attempt 1")
        assert first
        assert sorted(r["node"] for r in _runs(tmp_path, 1).values()) == ["w0", "w1"]
        assert c.get_job(job.id).state == JobState.RUNNING

        ray_cluster.kill_node("w1")
        killed = time.monotonic()
        wait_for(
            lambda: c.get_job(job.id).state == JobState.PENDING,
            timeout=REQUEUE_LIMIT_S,
            what="the gang requeued",
        )
        requeue_s = time.monotonic() - killed
        print(f"\nray: gang requeued {requeue_s:.1f} s after its node was killed")
        assert {n.name: n.state for n in op.list_nodes()}["w1"] == NodeState.DOWN
        # Four GPUs are left and the gang needs eight: it waits, it does not run half.
        time.sleep(2)
        waiting = c.get_job(job.id)
        assert (waiting.state, waiting.attempts) == (JobState.PENDING, 1)
        assert not _runs(tmp_path, 2)

        ray_cluster.start_worker("w1")
        back = time.monotonic()
        done = wait_for(
            lambda: (j := c.get_job(job.id)).state.finished and j,
            timeout=RUN_AGAIN_LIMIT_S,
            what="the gang to run again and finish",
        )
        print(f"ray: gang ran again and finished {time.monotonic() - back:.1f} s after w1 returned")
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)
        assert {n.name: n.state for n in op.list_nodes()}["w1"] == NodeState.READY
        assert sorted(r["node"] for r in _runs(tmp_path, 2).values()) == ["w0", "w1"]
        assert (tmp_path / "done-2-0").exists() and (tmp_path / "done-2-1").exists()
        # Only the attempt that exited 0 on every rank is reported as succeeded.
        assert state_history(c, job.id) == REQUEUED_ONCE_THEN_SUCCEEDED
        assert not (tmp_path / "done-1-0").exists() and not (tmp_path / "done-1-1").exists()
