"""Usage accounting, queue insight, logs and the event history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from mosu.core.reasons import PendingReason
from mosu.service import background
from mosu.service.app import create_app
from mosu.service.db.rows import JobRow
from mosu.service.services.lifecycle import split_by_day
from tests.service.conftest import OPERATOR_TOKEN, bearer, open_platform, seed, submit


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [
        ("2026-01-01T10:00:00", "2026-01-01T11:00:00", [("2026-01-01", 3600.0)]),
        (
            "2026-01-01T23:30:00",
            "2026-01-03T00:30:00",
            [("2026-01-01", 1800.0), ("2026-01-02", 86400.0), ("2026-01-03", 1800.0)],
        ),
        ("2026-01-01T10:00:00", "2026-01-01T10:00:00", []),
    ],
    ids=["within a day", "across two midnights", "empty"],
)
def test_usage_is_split_at_utc_midnight(start, end, want):
    assert split_by_day(ts(start), ts(end)) == want


def test_the_operator_submits_for_a_tenant_who_cannot_submit_for_another(api):
    tokens = seed(api)
    r = api.post("/v1/jobs?tenant=b", json={"name": "x", "command": "true"})
    assert (r.status_code, r.json()["tenant"]) == (201, "b")
    r = api.post("/v1/jobs", json={"name": "x", "command": "true"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "tenant")
    r = api.post(
        "/v1/jobs?tenant=b", json={"name": "x", "command": "t"}, headers=bearer(tokens["a"])
    )
    assert r.status_code == 404


def test_queue_positions_follow_the_engine_and_a_new_job_has_none_yet(api, platform):
    tokens = seed(api)
    api.put("/v1/tenants/a/quotas", json={"quotas": {"H800": {"guaranteed": 8}}})
    running = submit(api, tokens["a"], gpus=8)
    platform.loop.run_once()
    assert api.get(f"/v1/jobs/{running['id']}").json()["state"] == "running"
    first = submit(api, tokens["a"], gpus=4)
    second = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    late = submit(api, tokens["a"], gpus=1)
    entries = api.get("/v1/queue").json()["entries"]
    positions = {e["job_id"]: e["position"] for e in entries}
    assert sorted(p for p in positions.values() if p) == [1, 2]
    assert positions[late["id"]] is None
    assert {first["id"], second["id"]} == {j for j, p in positions.items() if p}
    assert all(e["reason"] for e in entries if e["position"])
    why = api.get(f"/v1/jobs/{late['id']}/why", headers=bearer(tokens["a"])).json()
    assert why["sentence"].endswith("has not been through a scheduling cycle yet.")
    # A tenant sees its own entries only.
    assert api.get("/v1/queue", headers=bearer(tokens["b"])).json()["entries"] == []


def test_a_deep_queue_is_explained_on_an_interval_and_a_new_job_in_its_first_cycle(
    api, platform, monkeypatch
):
    monkeypatch.setattr(background, "EXPLAIN_ALL_UP_TO", 1)  # two queued jobs are "deep"
    now = [datetime.now(UTC).timestamp()]
    platform.loop._clock = lambda: now[0]
    tokens = seed(api)
    api.put("/v1/tenants/a/quotas", json={"quotas": {"H800": {"guaranteed": 8}}})
    submit(api, tokens["a"], gpus=8)
    platform.loop.run_once()
    first = submit(api, tokens["a"], gpus=4)
    second = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()  # the first explanation: every job

    def queue() -> dict[int, tuple[int | None, str | None]]:
        entries = api.get("/v1/queue").json()["entries"]
        return {e["job_id"]: (e["position"], e["reason"]) for e in entries}

    explained = queue()
    assert [explained[j["id"]][0] for j in (first, second)] == [1, 2]
    # A stored reason the engine would not give: only a full explanation replaces it.
    with platform.tx() as s:
        row = s.get(JobRow, second["id"])
        assert row is not None
        row.pending_reason = PendingReason.WAITING_FOR_PREEMPTED
    now[0] += background.EXPLAIN_EVERY_S / 4
    late = submit(api, tokens["a"], gpus=1)
    platform.loop.run_once()  # within the interval: only the new job is explained
    partial = queue()
    assert partial[late["id"]][0] is None  # positions are those of the last full one
    assert partial[late["id"]][1] is not None
    why = api.get(f"/v1/jobs/{late['id']}/why", headers=bearer(tokens["a"])).json()
    assert not why["sentence"].endswith("has not been through a scheduling cycle yet.")
    assert partial[second["id"]] == (2, "waiting-for-preempted")
    assert partial[first["id"]] == explained[first["id"]]
    now[0] += background.EXPLAIN_EVERY_S
    platform.loop.run_once()  # the interval has passed: every job again
    full = queue()
    assert full[second["id"]] == explained[second["id"]]
    assert sorted(full[j["id"]][0] for j in (first, second, late)) == [1, 2, 3]


def test_logs_are_read_from_an_offset(api, platform):
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=1)
    path = platform.settings.logs_dir / str(job["id"]) / "replica-0.log"
    path.parent.mkdir(parents=True)
    path.write_text("hello\nworld\n")
    a = bearer(tokens["a"])
    first = api.get(f"/v1/jobs/{job['id']}/logs", headers=a).json()
    assert (first["data"], first["next_offset"], first["finished"]) == ("hello\nworld\n", 12, False)
    rest = api.get(f"/v1/jobs/{job['id']}/logs?offset=6", headers=a).json()
    assert rest["data"] == "world\n"
    r = api.get(f"/v1/jobs/{job['id']}/logs?replica=3", headers=a)
    assert (r.status_code, r.json()["error"]["field"]) == (404, "replica")  # no such log


def test_a_tenant_reads_only_the_history_of_its_own_jobs(api):
    tokens = seed(api)
    submit(api, tokens["a"], gpus=1)
    submit(api, tokens["b"], gpus=1)
    theirs = api.get("/v1/events", headers=bearer(tokens["a"])).json()["events"]
    assert {e["tenant"] for e in theirs} == {"a"}
    everything = api.get("/v1/events").json()["events"]
    assert {"tenant-created", "node-registered", "state"} <= {e["kind"] for e in everything}


def test_a_job_waiting_for_reclaim_is_estimated_from_the_borrowers_minimum_runtime(
    db_url, tmp_path, executor
):
    """The walkthrough: b borrows all 8 GPUs; a's job within its guarantee starts once
    b's job has run its minimum 20 s, and b's job has 30 s to stop."""
    p = open_platform(tmp_path / "data", db_url, executor, grace_s=30, min_runtime_s=20)
    try:
        with TestClient(create_app(p)) as api:
            api.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
            tokens = seed(api)
            borrower = submit(api, tokens["b"], gpus=8)
            p.loop.run_once()
            started = api.get(f"/v1/jobs/{borrower['id']}").json()["started_at"]
            waiting = submit(api, tokens["a"], gpus=4)
            p.loop.run_once()
            job = api.get(f"/v1/jobs/{waiting['id']}", headers=bearer(tokens["a"])).json()
            assert job["pending_reason"] == "waiting-for-guarantee"
            likely = datetime.fromisoformat(job["estimated_start"]).timestamp()
            late = datetime.fromisoformat(job["estimated_start_late"]).timestamp()
            reclaimable = datetime.fromisoformat(started).timestamp() + 20
            assert abs(likely - reclaimable) <= 1  # stored rounded to the second
            assert abs(late - (reclaimable + 30)) <= 1
            why = api.get(f"/v1/jobs/{waiting['id']}/why", headers=bearer(tokens["a"])).json()
            assert why["estimated_start_late"] == job["estimated_start_late"]
            assert "likely start" in why["sentence"] and "nine times in ten" in why["sentence"]
            (entry,) = api.get("/v1/queue", headers=bearer(tokens["a"])).json()["entries"]
            assert entry["estimated_start"] == job["estimated_start"]
            assert entry["estimated_start_late"] == job["estimated_start_late"]
    finally:
        p.close()


def test_a_borrower_behind_a_job_of_unknown_runtime_is_told_unknown(api, platform):
    tokens = seed(api)
    first = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    assert api.get(f"/v1/jobs/{first['id']}").json()["state"] == "running"
    big = submit(api, tokens["b"], gpus=8)  # needs a's 4 back; nothing has finished yet
    platform.loop.run_once()
    job = api.get(f"/v1/jobs/{big['id']}").json()
    assert job["pending_reason"] is not None
    assert (job["estimated_start"], job["estimated_start_late"]) == (None, None)
    why = api.get(f"/v1/jobs/{big['id']}/why").json()
    assert "unknown" in why["sentence"]
