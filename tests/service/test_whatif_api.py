"""``POST /v1/whatif``: a background task of the operator's, with progress, a result id, a
report and a plot; a tenant gets 403; bad changes are 422 naming the option; tasks are
bounded and cancelable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mosu.core.errors import Unavailable
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.whatif_tasks import TaskState, WhatIfTasks
from mosu.sim.whatif import Changes, History, Plan, plan_whatif
from mosu.traces import native, synthetic
from tests.service.conftest import bearer, seed, submit


def wait_until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def _ended(process) -> bool:
    """Whether the replay process has ended. The server's own thread joins it too, and
    of two joins of one process only the one that reaps it learns its exit status at
    once; the other sees it alive until then, so this asks until the answer settles."""
    return wait_until(lambda: not process.is_alive(), timeout=30)


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


def test_credits_at_the_platforms_card_and_at_the_requests(api, platform, executor):
    """The platform's rate card is part of its history: the as-configured replay is
    charged at it, the changed one at the request's ``rates``; the export carries it as
    ``rates.csv`` on the trace clock."""
    r = api.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": 2}]})
    assert r.status_code == 200, r.text
    history_on_the_platform(api, platform, executor)
    exported = api.get("/v1/history/export").json()
    lines = exported["files"]["rates.csv"].splitlines()
    assert lines[0] == "resource,per_hour,borrowed_per_hour,from_s"
    assert lines[1].startswith("H800,2.0,,") and float(lines[1].rsplit(",", 1)[1]) <= 0

    body = {"rates": [{"resource": "H800", "per_hour": 6}]}
    task = api.post("/v1/whatif", json=body).json()
    assert task["changes"] == ["rates from the request"]
    url = f"/v1/whatif/{task['id']}"
    report = wait_until(lambda: (t := api.get(url).json())["state"] == "succeeded" and t)["report"]
    assert report["rates"] == {"before": "platform", "after": "the request"}
    before = report["before"]["overall"]["credits_burned"]
    after = report["after"]["overall"]["credits_burned"]
    assert before > 0
    # The same schedule at three times the price; each of the five runs is rounded down
    # to a micro-credit once.
    assert after == pytest.approx(3 * before, abs=5 * 3e-6)

    twice = {"rates": [{"resource": "H800", "per_hour": 1}, {"resource": "H800", "per_hour": 2}]}
    r = api.post("/v1/whatif", json=twice)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "rates"


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


def _plan(seed: int = 5, days: int = 7) -> Plan:
    """Seven days take a while to replay (long enough to watch a task run); one day of
    a smaller cluster is quick (the plan a takeover makes from ``SMALL``)."""
    companies, gpus = (20, 512) if days > 1 else (4, 64)
    tenants, jobs = synthetic.generate(seed, companies=companies, days=days, gpus=gpus)
    history = History(tuple(jobs), tuple(tenants), tuple(native.default_cluster(tenants)))
    return plan_whatif(history, Changes(weights=((tenants[0].name, 2.0),)))


@pytest.fixture
def store(tmp_path) -> Iterator[sessionmaker[Session]]:
    """One store two servers' task runners share (SQLite)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mosu.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


SMALL = {"seed": 5, "days": 1}
"""A stored request: a server taking a task over plans it again from this."""


def _tasks(store, **kw) -> WhatIfTasks:
    kw.setdefault("replan", lambda request: _plan(request["seed"], request["days"]))
    return WhatIfTasks(store, beat_s=0.2, stale_s=30.0, **kw)


def test_tasks_are_bounded_and_a_cancel_ends_the_replay_process(store):
    tasks = _tasks(store, workers=1, max_queued=0)
    try:
        first = tasks.submit(_plan(), request=SMALL)
        wait_until(lambda: tasks.get(first.id).state is TaskState.RUNNING)
        process = wait_until(lambda: tasks.process_of(first.id))
        with pytest.raises(Unavailable, match="1 what-if replays run and 0 wait"):
            tasks.submit(_plan(), request=SMALL)
        assert tasks.cancel(first.id).state is TaskState.CANCELLED
        assert _ended(process)
        assert tasks.get(first.id).state is TaskState.CANCELLED
        assert tasks.get(first.id).report is None
    finally:
        tasks.shutdown()


def test_a_task_whose_server_died_is_taken_over_and_finishes(store):
    """Server A accepts a task and dies mid-replay (its beats stop, its replay process is
    gone); server B, on the same store, sees the task, waits until A has been silent for
    ``stale_s``, plans it again from the stored request and runs it to the end."""
    a = _tasks(store)
    later = [0.0]
    b = _tasks(store, clock=lambda: time.time() + later[0])
    task = a.submit(_plan(), request=SMALL)
    process = wait_until(lambda: a.process_of(task.id))
    a._closed.set()  # what a kill -9 leaves: no beat, no clean hand-back
    process.kill()
    process.join(timeout=30)
    assert b.get(task.id).state is TaskState.RUNNING
    assert b.watch_once() == []  # A is silent, but not for long enough yet
    later[0] = 31.0
    assert b.watch_once() == [task.id]
    done = wait_until(lambda: (t := b.get(task.id)).state.finished and t, timeout=120)
    assert done.state is TaskState.SUCCEEDED, done.error
    assert done.report is not None and done.report["jobs"] == len(_plan(**SMALL).jobs)
    assert done.plot_png is not None and done.plot_png[:4] == b"\x89PNG"
    assert [t.id for t in a.list()] == [task.id]  # every server sees the one task
    b.shutdown()


def test_a_cancel_through_another_server_ends_the_replay(store):
    a, b = _tasks(store), _tasks(store)
    task = a.submit(_plan(), request=SMALL)
    process = wait_until(lambda: a.process_of(task.id))
    assert b.cancel(task.id).state is TaskState.CANCELLED
    a.watch_once()  # A's next beat reads the row
    assert _ended(process)
    assert a.get(task.id).state is TaskState.CANCELLED
    a.shutdown()
    b.shutdown()


def test_a_server_that_stops_hands_its_tasks_back_at_once(store):
    a, b = _tasks(store), _tasks(store)
    task = a.submit(_plan(), request=SMALL)
    wait_until(lambda: a.process_of(task.id))
    a.shutdown()
    assert a.get(task.id).state is TaskState.QUEUED
    assert b.watch_once() == [task.id]  # no waiting for staleness
    done = wait_until(lambda: (t := b.get(task.id)).state.finished and t, timeout=120)
    assert done.state is TaskState.SUCCEEDED, done.error
    b.shutdown()
