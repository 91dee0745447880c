"""Nothing is lost when the server dies: kill -9 ``mosu up`` with jobs pending and
running, start it again, and every job is accounted for.

The crash rule (docs/platform.md): a job found starting or running by a new server
has its leftover processes stopped (SIGTERM, grace, SIGKILL) before anything else
starts, and is requeued as preempted; pending jobs stay pending.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mosu.core.api import JobSpec, JobState, QuotaSpec
from tests.e2e.conftest import WORKER, state_history, wait_for
from tests.e2e.test_reclaim_e2e import start_record


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def live_jobs(out: Path) -> dict[int, int]:
    """Job id -> attempt of every live worker process; fails if a job has two."""
    live: dict[int, int] = {}
    for path in out.glob("start-*.json"):
        job_id, attempt, _replica = (int(x) for x in path.stem.split("-")[1:])
        pid = int(json.loads(path.read_text())["pid"])
        if alive(pid):
            assert job_id not in live, f"job {job_id} runs twice"
            live[job_id] = attempt
    return live


def job(name: str, gpus: int, out: Path) -> JobSpec:
    return JobSpec(name=name, gpus=gpus, command=[sys.executable, str(WORKER), str(out), "release"])


def test_a_crash_loses_no_job_and_runs_none_twice(make_server, tmp_path: Path):
    out = tmp_path / "work"
    out.mkdir()
    args = ("--gpus", "8", "--gpu-type", "H800", "--grace", "2", "--min-runtime", "0")
    server = make_server(*args)
    with server.client() as op:
        t = op.create_tenant("t", {"H800": QuotaSpec(guaranteed=8)})
    with server.client(t.token) as c:
        ids = [c.submit(job(f"j{k}", gpus, out)).id for k, gpus in enumerate([4, 4, 4, 2])]
        wait_for(
            lambda: sum(c.get_job(i).state == JobState.RUNNING for i in ids) == 2,
            timeout=10,
            what="two jobs running",
        )
        running = [i for i in ids if c.get_job(i).state == JobState.RUNNING]
        records = [
            wait_for(lambda i=i: start_record(out, i, 1), timeout=10, what="start") for i in running
        ]
    old_pids = [r["pid"] for r in records]
    assert all(alive(p) for p in old_pids)

    server.kill9()
    assert all(alive(p) for p in old_pids), "jobs outlive a crashed server until it returns"
    restarted = make_server(*args, data_dir=server.data_dir, port=server.port)

    with restarted.client(t.token) as c:
        # Old processes were stopped before anything started again.
        wait_for(lambda: not any(alive(p) for p in old_pids), timeout=10, what="orphans gone")
        for i in running:
            assert (out / f"checkpoint-{i}").exists(), "the orphan got SIGTERM and checkpointed"
        jobs = {j.id: j for j in c.list_jobs()}
        assert sorted(jobs) == sorted(ids)
        for i in running:
            events = c.job_events(i)
            requeue = [e for e in events if e.to_state == JobState.PREEMPTED]
            assert [e.reason for e in requeue] == ["restart"]
        wait_for(
            lambda: sum(c.get_job(i).state == JobState.RUNNING for i in ids) == 2,
            timeout=10,
            what="two jobs running again",
        )
        held: list[tuple[str, int]] = []
        for j in c.list_jobs():
            # The current state is the last state event.
            assert state_history(c, j.id)[-1] == j.state
            for a in j.allocations:
                held += [(a.node, g) for g in a.gpu_indices]
        assert len(held) == len(set(held)) <= 8

        # No job has two live processes. A job is running once it is placed; its
        # process writes its start record a moment later.
        def both_live() -> dict[int, int] | None:
            found = live_jobs(out)
            return found if len(found) == 2 else None

        live = wait_for(both_live, timeout=10, what="the two running jobs' processes")
        assert sorted(live) == sorted(int(i) for i in ids if c.get_job(i).state == JobState.RUNNING)

        (out / "release").write_text("")
        wait_for(
            lambda: all(c.get_job(i).state == JobState.SUCCEEDED for i in ids),
            timeout=30,
            what="every job to finish",
        )
    assert os.path.exists(restarted.data_dir / "mosu.db")
