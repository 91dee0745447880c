"""``POST /v1/whatif``: a background task of the operator's, with progress, a result id, a
report and a plot; a tenant gets 403; bad changes are 422 naming the option; tasks are
bounded and cancelable."""

from __future__ import annotations

import time

import pytest

from mosu.core.errors import Unavailable
from mosu.service.whatif_tasks import TaskState, WhatIfTasks
from mosu.sim.whatif import Changes, History, plan_whatif
from mosu.traces import native, synthetic
from tests.service.conftest import bearer, seed, submit


def wait_until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def history_on_the_platform(api, platform, executor) -> dict[str, str]:
    """Two tenants' jobs really scheduled (fake executor): some run and end, some wait."""
    tokens = seed(api)
    ids = [submit(api, tokens["b"], gpus=4)["id"] for _ in range(3)]
    ids += [submit(api, tokens["a"], gpus=4)["id"] for _ in range(2)]
    for _ in range(6):
        platform.loop.run_once()
        for job_id in ids:
            if executor.launched.get(job_id) is not None:
                executor.exit(job_id, 0)
        time.sleep(0.01)
    return tokens


def test_the_operator_runs_a_whatif_and_gets_report_and_plot(api, platform, executor):
    tokens = history_on_the_platform(api, platform, executor)
    r = api.post("/v1/whatif", json={"set_guarantee": ["a=H800:8"], "add_nodes": ["1x8:H800"]})
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["state"] in ("queued", "running")
    assert task["jobs"] == 5
    assert task["changes"] == ["guarantee a H800=8", "add nodes 1x8:H800"]
    url = f"/v1/whatif/{task['id']}"
    done = wait_until(lambda: (t := api.get(url).json())["state"] == "succeeded" and t)
    assert done["progress"] == 1.0
    report = done["report"]
    assert set(report["before"]["tenants"]) == {"a", "b"}
    assert report["after"]["overall"]["jobs"] == 5
    assert report["fidelity"]["jobs"] == 5
    png = api.get(done["plot"])
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert [t["id"] for t in api.get("/v1/whatif").json()["tasks"]] == [task["id"]]

    tenant = bearer(tokens["a"])
    for method, path in [
        ("POST", "/v1/whatif"),
        ("GET", "/v1/whatif"),
        ("GET", url),
        ("POST", f"{url}/cancel"),
        ("GET", f"{url}/waits.png"),
    ]:
        body = {"set_weight": ["a=2"]} if method == "POST" and path == "/v1/whatif" else None
        r = api.request(method, path, json=body, headers=tenant)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/whatif/0123456789abcdef").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"set_guarantee": ["zeta=H800:4"]}, "set_guarantee", "unknown tenant 'zeta'"),
        ({"set_guarantee": ["a=A100:4"]}, "set_guarantee", "GPU type 'A100' is not in"),
        ({"set_limit": ["a=H800:-1"]}, "set_limit", "GPUs must be >= 0"),
        ({"remove_node": ["nope"]}, "remove_node", "no node 'nope'"),
        ({}, "changes", "no change given"),
    ],
)
def test_bad_changes_are_422_naming_the_option(api, platform, executor, body, field, message):
    history_on_the_platform(api, platform, executor)
    r = api.post("/v1/whatif", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert message in error["message"]


def test_tasks_are_bounded_and_a_cancel_ends_the_replay_process():
    tenants, jobs = synthetic.generate(5, companies=20, days=7, gpus=512)
    history = History(tuple(jobs), tuple(tenants), tuple(native.default_cluster(tenants)))
    plan = plan_whatif(history, Changes(weights=((tenants[0].name, 2.0),)))
    tasks = WhatIfTasks(workers=1, max_queued=0)
    try:
        first = tasks.submit(plan)
        wait_until(lambda: first.state is TaskState.RUNNING and first.process is not None)
        process = first.process
        with pytest.raises(Unavailable, match="1 what-if replays run and 0 wait"):
            tasks.submit(plan)
        assert tasks.cancel(first.id).state is TaskState.CANCELLED
        process.join(timeout=30)
        assert not process.is_alive()
        assert tasks.get(first.id).state is TaskState.CANCELLED
        assert first.report is None
    finally:
        tasks.shutdown()
