"""A what-if accepted is not lost when the server dies: ``kill -9`` of ``mosu up`` right
after ``POST /v1/whatif`` answered, then ``mosu up`` again on the same store; the task
is taken over, replayed from the start by the new server, and succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import httpx

from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import OPERATOR_TOKEN, Server, wait_for

JOBS = 20


def test_a_whatif_accepted_before_a_kill_9_finishes_after_the_restart(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(
        "--executor",
        "simulated",
        "--nodes",
        "2x8:H800",
        env={"MOSU_WHATIF_STALE_S": "1", "MOSU_WHATIF_BEAT_S": "0.2"},
    )
    with server.client() as op:
        token = op.create_tenant("acme", {"H800": QuotaSpec(guaranteed=8)}).token
    with server.client(token) as c:
        for k in range(JOBS):
            c.submit(
                JobSpec(name=f"j{k}", gpus=4, gpu_type="H800", estimate="30s", command=["train"])
            )
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
        r = api.post("/v1/whatif", json={"set_weight": ["acme=2"]})
        assert r.status_code == 202, r.text
        server.kill9()
        task_id = r.json()["id"]
        assert r.json()["jobs"] == JOBS

        restarted = time.time()
        server.start()
        url = f"/v1/whatif/{task_id}"
        done = wait_for(
            lambda: (t := api.get(url).json())["state"] in ("succeeded", "failed") and t,
            timeout=120,
            what="the what-if to finish after the restart",
        )
    assert done["state"] == "succeeded", done
    assert done["report"]["jobs"] == JOBS
    assert done["changes"] == ["weight acme=2"]
    # The new server ran it: it (re)started after the restart.
    assert done["started_at"] is not None
    assert datetime.fromisoformat(done["started_at"]).timestamp() >= restarted
