"""The server dies, the work does not: ``kill -9`` of ``mosu up`` at 20 random moments
of a 200-job run, each time started again on the same store.

Every job appends to a marker file of its own when it starts and when it finishes (with
the exit code it is about to return), so the jobs themselves tell what ran. What must
hold, from the markers and the store:

- 0 jobs lost: every one of the 200 ended, with the exit code its process returned;
- 0 run twice and 0 running jobs restarted: every job started exactly once, as the
  attempt the store says it ran (an attempt is only ever requeued if it never started);
- every exit that happened while no server ran is recorded with its code;
- replicas found running by a new server are adopted (an ``adopted`` event), and no GPU
  is ever held by two jobs at once (the history check of the failover test).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from mosu.agent.supervised import supervisors_under
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import Server, wait_for
from tests.e2e.test_failover_200 import _check_history, _read_history
from tests.jobs import JOB_PYTHON

JOBS = 200
KILLS = 20
SEED = 20261204

# ``python -S -c``: stdlib only, quick to start. The marker is appended and fsynced
# before the process goes on, so what it says happened did happen.
JOB_CODE = """
import os, sys, time
marker, nap, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
attempt = os.environ["MOSU_ATTEMPT"]
def note(line):
    with open(marker, "a") as f:
        f.write(line + "\\n")
        f.flush()
        os.fsync(f.fileno())
note(f"start {attempt} {time.time():.3f}")
time.sleep(nap)
note(f"finish {attempt} {time.time():.3f} {code}")
sys.exit(code)
"""


def _job(k: int, rng: random.Random, work: Path) -> tuple[JobSpec, int]:
    code = k % 3  # 0, 1 or 2: each exit must be recorded with its own code
    nap = f"{rng.uniform(1.0, 6.0):.2f}"
    command = [JOB_PYTHON, "-S", "-c", JOB_CODE, str(work / f"marker-{k}"), nap, str(code)]
    return JobSpec(name=f"j{k}", gpus=1, gpu_type="H800", command=command), code


def test_kill_9_at_20_moments_of_200_jobs_loses_none_and_restarts_none(
    make_server: Callable[..., Server], work: Path
) -> None:
    rng = random.Random(SEED)
    args = ("--gpus", "8", "--gpu-type", "H800", "--node-name", "n0")
    args += ("--grace", "1", "--min-runtime", "0")
    server = make_server(*args, env={"MOSU_TICK_S": "0.5"})
    with server.client() as op:
        token = op.create_tenant("t", {"H800": QuotaSpec(guaranteed=8)}).token
    want: dict[int, tuple[int, int]] = {}  # job id -> (job index, exit code)
    with server.client(token) as c:
        for k in range(JOBS):
            spec, code = _job(k, rng, work)
            want[c.submit(spec).id] = (k, code)

    downtimes: list[tuple[float, float]] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.5))
        server.kill9()
        down = time.time()
        time.sleep(rng.uniform(0.0, 1.5))
        server.start()
        downtimes.append((down, time.time()))

    with server.client(token) as c:
        jobs = wait_for(
            lambda: (js := c.list_jobs()) and all(j.state.finished for j in js) and js,
            timeout=240,
            what="every job to end",
            every=0.5,
        )
    server.stop()

    # 0 lost: every job ended, with its process's own exit code.
    assert sorted(j.id for j in jobs) == sorted(want)
    wrong = {
        j.id: (j.state.value, j.exit_code, want[j.id][1])
        for j in jobs
        if j.exit_code != want[j.id][1]
        or j.state.value != ("succeeded" if want[j.id][1] == 0 else "failed")
    }
    assert wrong == {}, f"jobs ended wrongly: {wrong}"

    # 0 run twice, 0 running jobs restarted: one start per job, as its last attempt.
    downtime_exits = 0
    for j in jobs:
        k = want[j.id][0]
        lines = (work / f"marker-{k}").read_text().splitlines()
        starts = [x.split() for x in lines if x.startswith("start")]
        finishes = [x.split() for x in lines if x.startswith("finish")]
        assert len(starts) == 1 and len(finishes) == 1, f"job {j.id} ran {len(starts)} times"
        assert starts[0][1] == finishes[0][1] == str(j.attempts)
        assert int(finishes[0][3]) == want[j.id][1]
        ended = float(finishes[0][2])
        downtime_exits += any(down <= ended < up for down, up in downtimes)

    engine = create_engine(f"sqlite:///{server.data_dir / 'mosu.db'}")
    try:
        history = _read_history(engine)
        with engine.connect() as conn:
            adopted = conn.execute(
                text("SELECT count(*) FROM events WHERE kind = 'adopted'")
            ).scalar_one()
            replicas_adopted = conn.execute(
                text("SELECT count(*) FROM events WHERE kind = 'adopted' OR reason = 'adopted'")
            ).scalar_one()
    finally:
        engine.dispose()
    requeued = _check_history(history, sorted(want), expect_success=False)
    print(
        f"\ncrash: {KILLS} kills -9 of the server; {replicas_adopted} running replicas "
        f"adopted ({adopted} already running, the rest mid-start); {downtime_exits} exits "
        f"while no server ran, each recorded with its code; {requeued} attempts requeued "
        "before they started"
    )
    assert downtime_exits >= 1, "no job ended while the server was down: it proved nothing"
    assert adopted >= 1, "no kill caught a job running: it proved nothing"
    assert supervisors_under(server.data_dir) == {}, "a supervisor outlived its replica"
