"""``GET /v1/events/stream``: Server-Sent Events of the history, per tenant, resumable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import insert

from mosu.service.app import create_app
from mosu.service.db.rows import EventRow
from mosu.service.platform import Platform
from mosu.service.services.auth import OPERATOR, Principal
from mosu.service.services.events import EventCursor
from tests.e2e.conftest import free_port
from tests.service.conftest import OPERATOR_TOKEN, TestClient, bearer, seed, submit


def parse_sse(text: str) -> list[dict]:
    """Each dispatched event as {"id", "event", "data"}; blocks without data are skipped."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if "data" in fields:
            out.append({**fields, "data": json.loads(fields["data"])})
    return out


def test_stream_replays_history_in_order_with_resume_ids(api: TestClient) -> None:
    tokens = seed(api)
    submit(api, tokens["a"], gpus=1)
    r = api.get("/v1/events/stream", params={"after": 0, "limit": 4})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert [e["event"] for e in events] == [
        "node-registered",
        "tenant-created",
        "tenant-created",
        "state",
    ]
    assert [int(e["id"]) for e in events] == [e["data"]["id"] for e in events]
    assert events[-1]["data"]["reason"] == "submitted"


def test_a_tenant_sees_only_its_own_jobs_events(api: TestClient) -> None:
    tokens = seed(api)
    mine = submit(api, tokens["a"], gpus=1)
    submit(api, tokens["b"], gpus=1)
    r = api.get(
        "/v1/events/stream", params={"after": 0, "wait_s": 0.3}, headers=bearer(tokens["a"])
    )
    events = parse_sse(r.text)
    assert [(e["data"]["job_id"], e["data"]["tenant"]) for e in events] == [(mine["id"], "a")]
    other = api.get(
        "/v1/events/stream", params={"tenant": "b", "wait_s": 0.1}, headers=bearer(tokens["a"])
    )
    assert other.status_code == 404  # another tenant is not found, as everywhere
    assert other.json()["error"]["field"] == "tenant"


def test_last_event_id_resumes_after_the_last_event_seen(api: TestClient) -> None:
    tokens = seed(api)
    for _ in range(3):
        submit(api, tokens["a"], gpus=1)
    first = parse_sse(api.get("/v1/events/stream", params={"after": 0, "limit": 4}).text)
    rest = parse_sse(
        api.get(
            "/v1/events/stream",
            params={"wait_s": 0.3},
            headers={"Last-Event-ID": first[-1]["id"]},
        ).text
    )
    seen = [e["data"]["id"] for e in first + rest]
    assert seen == sorted(set(seen))
    assert len(seen) == 6  # node, two tenants, three submissions
    assert [e["data"]["reason"] for e in rest] == ["submitted", "submitted"]


def test_a_malformed_last_event_id_is_refused_naming_the_header(api: TestClient) -> None:
    r = api.get("/v1/events/stream", headers={"Last-Event-ID": "yesterday"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "Last-Event-ID"


def test_without_a_start_the_stream_begins_at_the_current_end(api: TestClient) -> None:
    tokens = seed(api)
    submit(api, tokens["a"], gpus=1)
    assert parse_sse(api.get("/v1/events/stream", params={"wait_s": 0.3}).text) == []


def _add_event(platform: Platform, event_id: int, tenant: str | None = "a") -> None:
    with platform.tx() as s:
        s.execute(
            insert(EventRow).values(id=event_id, at=time.time(), job_id=1, tenant=tenant, kind="x")
        )


def test_an_event_committed_late_with_a_lower_id_is_still_delivered(platform: Platform) -> None:
    cursor = EventCursor(after=0)
    _add_event(platform, 1)
    _add_event(platform, 3)  # id 2 belongs to a transaction that has not committed yet
    with platform.sessions() as s:
        assert [e.id for e in cursor.read(s, principal=OPERATOR)] == [1, 3]
    _add_event(platform, 2)
    with platform.sessions() as s:
        assert [e.id for e in cursor.read(s, principal=OPERATOR)] == [2]
        assert cursor.read(s, principal=OPERATOR) == []
    assert cursor.after == 3


def test_a_tenant_cursor_never_delivers_another_tenants_gap(platform: Platform) -> None:
    cursor = EventCursor(after=0)
    _add_event(platform, 1, tenant="a")
    _add_event(platform, 2, tenant="b")
    _add_event(platform, 3, tenant="a")
    with platform.sessions() as s:
        assert [e.id for e in cursor.read(s, principal=Principal(tenant="a"))] == [1, 3]
        assert cursor.read(s, principal=Principal(tenant="a")) == []


@pytest.fixture
def live_url(platform: Platform) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_live_stream_delivers_a_submission_as_it_happens(live_url: str) -> None:
    ops = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with httpx.Client(base_url=live_url, headers=ops, timeout=10) as c:
        c.post("/v1/nodes", json={"name": "n0", "gpu_type": "H800", "gpus": 8})
        token = c.post("/v1/tenants", json={"name": "a", "quotas": {}}).json()["token"]
        got: list[dict] = []
        with c.stream("GET", "/v1/events/stream", headers=bearer(token)) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"  # the stream is open: now submit
            job = c.post(
                "/v1/jobs", json={"name": "j", "command": ["true"]}, headers=bearer(token)
            ).json()
            block: list[str] = []
            deadline = time.monotonic() + 10
            for line in lines:
                assert time.monotonic() < deadline, "no event within 10 s"
                if line:
                    block.append(line)
                    continue
                got += parse_sse("\n".join(block))
                block = []
                if got:
                    break
    assert got[0]["event"] == "state"
    assert got[0]["data"]["job_id"] == job["id"]
    assert got[0]["data"]["reason"] == "submitted"
