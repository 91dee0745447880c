"""The API over a real store (SQLite, and PostgreSQL when configured) with a fake executor:
auth and tenant isolation, bad input, and the job lifecycle driven by the real engine."""

from __future__ import annotations

import pytest

from mosu.service.platform import Platform
from tests.service.conftest import FakeExecutor, bearer, seed, submit


def state(api, job_id: int) -> str:
    return api.get(f"/v1/jobs/{job_id}").json()["state"]


def states(api, job_id: int) -> list[str]:
    events = api.get(f"/v1/jobs/{job_id}/events").json()["events"]
    return [e["to_state"] for e in events if e["kind"] == "state"]


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "want_message"),
    [
        ({}, "missing token"),
        ({"Authorization": "Bearer nope"}, "unknown token"),
        ({"Authorization": "Basic abc"}, "malformed Authorization header"),
    ],
    ids=["no token", "wrong token", "not a bearer token"],
)
def test_requests_without_a_valid_token_are_401_naming_the_problem(api, headers, want_message):
    api.headers.pop("Authorization")
    r = api.get("/v1/jobs", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert want_message in r.json()["error"]["message"]


def test_a_tenant_sees_only_its_own_jobs_and_others_are_404(api):
    tokens = seed(api)
    job_b = submit(api, tokens["b"], gpus=1)
    job_a = submit(api, tokens["a"], gpus=1)
    listed = api.get("/v1/jobs", headers=bearer(tokens["a"])).json()["jobs"]
    assert [j["id"] for j in listed] == [job_a["id"]]
    for path in ("", "/why", "/events", "/logs"):
        r = api.get(f"/v1/jobs/{job_b['id']}{path}", headers=bearer(tokens["a"]))
        assert r.status_code == 404, path
    r = api.post(f"/v1/jobs/{job_b['id']}/cancel", headers=bearer(tokens["a"]))
    assert r.status_code == 404
    assert state(api, job_b["id"]) == "pending"


def test_a_tenant_sees_the_cluster_only_in_aggregate_and_cannot_change_quotas(api):
    tokens = seed(api)
    a = bearer(tokens["a"])
    assert api.get("/v1/nodes", headers=a).status_code == 403
    cluster = api.get("/v1/cluster", headers=a).json()
    assert cluster["gpu_types"] == [
        {
            "gpu_type": "H800",
            "vendor": "nvidia",
            "nodes": 1,
            "gpus": 8,
            "allocated": 0.0,
            "free": 8.0,
            "guaranteed": 8.0,
            "overcommitted": 0.0,
        }
    ]
    r = api.put("/v1/tenants/a/quotas", json={"quotas": {"H800": {"guaranteed": 8}}}, headers=a)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert api.post("/v1/tenants", json={"name": "c"}, headers=a).status_code == 403
    assert [t["name"] for t in api.get("/v1/tenants", headers=a).json()] == ["a"]
    assert api.get("/v1/tenants/b", headers=a).status_code == 404


def test_guarantees_the_cluster_cannot_honour_are_warned_and_shown_per_gpu_type(api):
    seed(api)  # 8 H800s, 4 + 4 guaranteed: nothing to warn about
    r = api.post("/v1/tenants", json={"name": "c", "quotas": {"A100": {"guaranteed": 2}}})
    assert r.status_code == 201
    assert r.json()["warnings"] == [
        "the cluster has no A100 GPUs (its types: H800); this guarantee cannot be met "
        "until A100 nodes join"
    ]
    r = api.post("/v1/tenants", json={"name": "d", "quotas": {"H800": {"guaranteed": 100}}})
    assert r.json()["warnings"] == [
        "H800 guarantees now total 108 GPUs but the cluster has 8: over-committed by 100 "
        "(mosu cluster shows it)"
    ]
    r = api.put("/v1/tenants/d/quotas", json={"quotas": {"H800": {"guaranteed": 0}}})
    assert r.status_code == 200
    assert r.json()["warnings"] == []
    r = api.put("/v1/tenants/d/quotas", json={"quotas": {"H800": {"guaranteed": 1}}})
    assert r.json()["warnings"] == [
        "H800 guarantees now total 9 GPUs but the cluster has 8: over-committed by 1 "
        "(mosu cluster shows it)"
    ]
    by_type = {t["gpu_type"]: t for t in api.get("/v1/cluster").json()["gpu_types"]}
    assert (by_type["A100"]["gpus"], by_type["A100"]["guaranteed"]) == (0, 2.0)
    assert by_type["A100"]["overcommitted"] == 2.0
    assert (by_type["H800"]["guaranteed"], by_type["H800"]["overcommitted"]) == (9.0, 1.0)
    listed = api.get("/v1/tenants").json()
    assert all("warnings" not in t for t in listed), "warnings answer a change, not a list"


def test_tokens_are_stored_hashed(api, platform: Platform):
    tokens = seed(api)
    with platform.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT token_hash FROM tokens")]
    assert tokens["a"] not in stored
    assert all(len(h) == 64 for h in stored)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "content_type", "want_status", "want_field", "want_in_message"),
    [
        ("name: x\ngpus: [\n", "application/yaml", 400, None, "malformed YAML"),
        ('{"name": "x", ', "application/json", 400, None, "malformed JSON"),
        ("- just\n- a list\n", "application/yaml", 422, None, "expected a mapping"),
        ('{"name": "x", "gpus": -1, "command": "true"}', None, 422, "gpus", "greater than"),
        ('{"name": "x", "gpus": 100000, "command": "true"}', None, 422, "gpus", "less than"),
        ('{"name": "x", "gpus": 1.5, "command": "true"}', None, 422, "gpus", "fractional"),
        ('{"name": "x", "gpus": 16, "command": "true"}', None, 422, "gpus", "largest node has 8"),
        (
            '{"name": "x", "gpus": 8, "replicas": 2, "command": "true"}',
            None,
            422,
            "gpus",
            "at most",
        ),
        ('{"name": "x", "gpu_type": "B300", "command": "true"}', None, 422, "gpu_type", "B300"),
        ('{"name": "x", "command": "true", "colour": 1}', None, 422, "colour", "unknown field"),
        ('{"name": "x"}', None, 422, "command", "field required"),
        ('{"name": "x", "command": "t", "max_runtime": "soon"}', None, 422, "max_runtime", "dur"),
        ('{"name": "x", "command": "t", "replicas": 2, "gpus": 0.5}', None, 422, "gpus", "single"),
        (
            '{"name": "x", "command": "t", "env": {"MOSU_JOB_ID": "1"}}',
            None,
            422,
            "env.MOSU_JOB_ID",
            "MOSU_",
        ),
    ],
    ids=[
        "malformed yaml",
        "malformed json",
        "not a mapping",
        "negative gpus",
        "absurd gpus",
        "fractional gpus above one",
        "more gpus than any node",
        "more gpus than the cluster",
        "unknown gpu type",
        "unknown field",
        "missing command",
        "bad duration",
        "fractional gang",
        "reserved env",
    ],
)
def test_bad_job_specs_are_4xx_naming_the_field(
    api, body, content_type, want_status, want_field, want_in_message
):
    tokens = seed(api)
    headers = bearer(tokens["a"]) | {"Content-Type": content_type or "application/json"}
    r = api.post("/v1/jobs", content=body.encode(), headers=headers)
    assert r.status_code == want_status, r.text
    error = r.json()["error"]
    assert error["field"] == want_field
    assert want_in_message in error["message"]
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_a_job_above_the_tenant_limit_is_refused_at_submit(api):
    tokens = seed(api)
    api.put("/v1/tenants/a/quotas", json={"quotas": {"H800": {"guaranteed": 2, "limit": 2}}})
    r = api.post(
        "/v1/jobs", json={"name": "x", "gpus": 4, "command": "t"}, headers=bearer(tokens["a"])
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "capacity"
    assert "at most 2" in r.json()["error"]["message"]


def test_operator_submitting_for_an_unknown_tenant_is_404(api):
    seed(api)
    r = api.post("/v1/jobs?tenant=nobody", json={"name": "x", "command": "t"})
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "not-found",
        "message": "no tenant named 'nobody'",
        "field": "tenant",
    }


def test_bad_tenant_and_quota_input_names_the_field(api):
    r = api.post("/v1/tenants", json={"name": "Bad Name!"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "name"
    r = api.post(
        "/v1/tenants", json={"name": "x", "quotas": {"H800": {"guaranteed": 4, "limit": 2}}}
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"].startswith("quotas.H800")
    api.post("/v1/tenants", json={"name": "x"})
    r = api.post("/v1/tenants", json={"name": "x"})
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "name"


def test_unknown_routes_and_ids_are_json_404(api):
    r = api.get("/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not-found"
    r = api.get("/v1/jobs/12345")
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "job_id"


# ---------------------------------------------------------------- lifecycle


def test_a_job_runs_to_success_and_every_transition_is_an_event(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=2, env={"X": "1"}, workdir="/tmp")
    platform.loop.run_once()
    launch = executor.launched[job["id"]]
    assert launch.env == {"X": "1"}
    assert launch.workdir == "/tmp"
    assert [r.gpu_indices for r in launch.replicas] == [[0, 1]]
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["state"] == "running"
    assert got["allocations"][0]["pid"] is not None
    executor.exit(job["id"], 0)
    platform.loop.run_once()
    assert states(api, job["id"]) == ["pending", "starting", "running", "succeeded"]
    usage = api.get("/v1/usage").json()["records"]
    assert [(u["tenant"], u["gpu_type"]) for u in usage] == [("a", "H800")]


def test_a_nonzero_exit_fails_the_job_with_its_code(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=1)
    platform.loop.run_once()
    executor.exit(job["id"], 3)
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert (got["state"], got["exit_code"], got["message"]) == ("failed", 3, "exit code 3")


def test_a_job_whose_command_cannot_start_fails_and_frees_its_gpus(api, platform, executor):
    tokens = seed(api)
    executor.fail_start = True
    job = submit(api, tokens["a"], gpus=8)
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["state"] == "failed"
    assert "could not start" in got["message"]
    assert api.get("/v1/cluster").json()["gpu_types"][0]["allocated"] == 0


def test_cancel_pending_is_immediate_and_cancel_running_stops_first(api, platform, executor):
    tokens = seed(api)
    a = bearer(tokens["a"])
    running = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    waiting = submit(api, tokens["a"], gpus=8)
    assert api.post(f"/v1/jobs/{waiting['id']}/cancel", headers=a).json()["state"] == "cancelled"
    r = api.post(f"/v1/jobs/{running['id']}/cancel", headers=a).json()
    assert (r["state"], r["stop_requested"]) == ("running", "cancel")
    platform.loop.run_once()
    assert executor.stopped == [running["id"]]
    executor.exit(running["id"], None)
    platform.loop.run_once()
    assert states(api, running["id"]) == ["pending", "starting", "running", "cancelled"]
    assert states(api, waiting["id"]) == ["pending", "cancelled"]
    r = api.post(f"/v1/jobs/{running['id']}/cancel", headers=a)
    assert r.json()["state"] == "cancelled"


def test_borrowed_gpus_are_reclaimed_for_a_tenant_below_its_guarantee(api, platform, executor):
    tokens = seed(api)
    big = submit(api, tokens["b"], gpus=8)
    platform.loop.run_once()
    assert state(api, big["id"]) == "running"
    small = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    # b is asked to stop but keeps its GPUs until its processes exit.
    assert executor.stopped == [big["id"]]
    waiting = api.get(f"/v1/jobs/{small['id']}").json()
    assert (waiting["state"], waiting["pending_reason"]) == ("pending", "waiting-for-preempted")
    assert api.get("/v1/cluster").json()["gpu_types"][0]["allocated"] == 8
    platform.loop.run_once()  # deciding again changes nothing while b checkpoints
    assert executor.stopped == [big["id"]]
    assert state(api, small["id"]) == "pending"
    executor.exit(big["id"], 0)
    platform.loop.run_once()
    assert state(api, small["id"]) == "running"
    assert len(executor.launched[small["id"]].replicas[0].gpu_indices) == 4
    got = api.get(f"/v1/jobs/{big['id']}").json()
    assert got["state"] == "pending"
    assert got["pending_reason"] is not None
    clean = f"preempted for job {small['id']}; stopped cleanly (exit 0) after SIGTERM"
    assert got["message"] == clean
    why = api.get(f"/v1/jobs/{big['id']}/why").json()
    assert why["position"] == 1
    assert why["sentence"].startswith(f"Job {big['id']} is pending ({got['pending_reason']}")
    queue = api.get("/v1/queue", headers=bearer(tokens["b"])).json()["entries"]
    assert [(e["job_id"], e["position"]) for e in queue] == [(big["id"], 1)]
    assert states(api, big["id"]) == ["pending", "starting", "running", "preempted", "pending"]
    events = api.get(f"/v1/jobs/{big['id']}/events").json()["events"]
    assert [e["reason"] for e in events if e["kind"] == "stop-requested"] == ["reclaim"]
    assert [e["message"] for e in events if e["to_state"] == "preempted"] == [clean]


def test_max_runtime_stops_the_job_and_fails_it(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=1, max_runtime=0.01)
    platform.loop.run_once()
    import time

    time.sleep(0.05)
    platform.loop.run_once()
    assert executor.stopped == [job["id"]]
    executor.exit(job["id"], None)
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["state"] == "failed"
    assert "max_runtime" in got["message"]


def test_a_drained_node_starts_nothing_new(api, platform, executor):
    tokens = seed(api)
    assert api.post("/v1/nodes/n0/drain").json()["state"] == "draining"
    job = submit(api, tokens["a"], gpus=1)
    platform.loop.run_once()
    assert state(api, job["id"]) == "pending"
    api.post("/v1/nodes/n0/undrain")
    platform.loop.run_once()
    assert state(api, job["id"]) == "running"


def test_a_new_server_adopts_running_jobs_without_touching_them(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    [alloc] = api.get(f"/v1/jobs/{job['id']}").json()["allocations"]
    # A new server process finds the job running: its supervisor still holds it.
    fresh = FakeExecutor()
    platform.loop._executor = fresh
    platform.loop.reconcile()
    [adopted] = fresh.adopted
    assert (adopted.job_id, adopted.attempt, adopted.tenant) == (job["id"], 1, "a")
    [replica] = adopted.replicas
    assert replica.pid == alloc["pid"]
    assert replica.supervisor is not None and replica.run_dir is not None
    assert replica.run_dir.endswith(f"/logs/{job['id']}/run/1.0")
    assert states(api, job["id"]) == ["pending", "starting", "running"]
    assert fresh.stopped == [] and fresh.launched == {}
    # It ended while no server watched: recorded once, with its code.
    fresh.exit(job["id"], 3, attempt=1)
    platform.loop.run_once()
    fresh.exit(job["id"], 3, attempt=1)
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert (got["state"], got["exit_code"]) == ("failed", 3)
    assert states(api, job["id"]) == ["pending", "starting", "running", "failed"]


def test_a_job_whose_supervisor_died_is_requeued_by_the_new_server(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    fresh = FakeExecutor()
    fresh.lost_on_adopt = {job["id"]}
    platform.loop._executor = fresh
    platform.loop.reconcile()
    assert states(api, job["id"]) == ["pending", "starting", "running", "preempted", "pending"]
    assert api.get("/v1/cluster").json()["gpu_types"][0]["allocated"] == 0


def test_an_attempt_the_dead_server_never_started_is_started_by_the_next(
    api, platform, monkeypatch
):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=4)
    with monkeypatch.context() as m:
        # The server commits the start, then dies before it launches anything.
        m.setattr(platform.loop, "_launch_all", lambda job_ids: None)
        platform.loop.cycle()
    assert states(api, job["id"]) == ["pending", "starting"]
    fresh = FakeExecutor()
    platform.loop._executor = fresh
    platform.loop.reconcile()
    assert list(fresh.launched) == [job["id"]], "started as it is, not requeued"
    assert fresh.launched[job["id"]].attempt == 1
    assert states(api, job["id"]) == ["pending", "starting", "running"]


def test_a_graceful_stop_leaves_running_jobs_alone(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    platform.loop.leading = True
    platform.loop.stop()
    assert executor.detached == 1 and executor.stopped == []
    assert states(api, job["id"]) == ["pending", "starting", "running"]


def test_drain_with_stop_jobs_stops_and_requeues_the_nodes_work(api, platform, executor):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    assert api.post("/v1/nodes/n0/drain").json()["state"] == "draining"
    platform.loop.run_once()
    assert executor.stopped == []
    assert api.post("/v1/nodes/n0/drain?stop_jobs=true").json()["state"] == "draining"
    platform.loop.run_once()
    assert executor.stopped == [job["id"]]
    executor.exit(job["id"], None)
    platform.loop.run_once()
    assert states(api, job["id"]) == ["pending", "starting", "running", "preempted", "pending"]
    events = api.get(f"/v1/jobs/{job['id']}/events").json()["events"]
    assert [e["reason"] for e in events if e["kind"] == "stop-requested"] == ["drain"]


def test_fractional_jobs_share_one_gpu(api, platform, executor):
    tokens = seed(api)
    one = submit(api, tokens["a"], gpus=0.5)
    two = submit(api, tokens["a"], gpus=0.5)
    platform.loop.run_once()
    r1 = executor.launched[one["id"]].replicas[0]
    r2 = executor.launched[two["id"]].replicas[0]
    assert r1.gpu_indices == r2.gpu_indices
    assert len(r1.gpu_indices) == 1
    assert (r1.gpu_milli, r2.gpu_milli) == (500, 500)
    assert api.get("/v1/cluster").json()["gpu_types"][0]["allocated"] == 1.0


def test_a_node_cannot_shrink_under_a_running_job(api, platform, executor):
    tokens = seed(api)
    submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    r = api.post("/v1/nodes", json={"name": "n0", "gpu_type": "H800", "gpus": 2})
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "gpus"
    r = api.post("/v1/nodes", json={"name": "n0", "gpu_type": "A100", "gpus": 8})
    assert (r.status_code, r.json()["error"]["field"]) == (409, "gpu_type")
    r = api.post("/v1/nodes", json={"name": "n0", "gpu_type": "H800", "gpus": 16})
    assert (r.status_code, r.json()["gpus"]) == (201, 16)


@pytest.mark.parametrize(
    ("exit_code", "message", "want"),
    [
        (0, "", "preempted for job 2; stopped cleanly (exit 0) after SIGTERM"),
        (3, "", "preempted for job 2; exit code 3 after SIGTERM"),
        (None, "killed by SIGKILL", "preempted for job 2; killed by SIGKILL"),
        (None, "", "preempted for job 2"),
    ],
)
def test_how_a_preempted_job_ended_reads_in_words(exit_code, message, want):
    from mosu.service.services.lifecycle import stop_outcome

    assert stop_outcome("preempted for job 2", exit_code, message) == want
