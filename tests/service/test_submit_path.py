"""The submit path: what it answers is what was stored, and a job is never stored without
its "submitted" event."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, insert, select, table
from sqlalchemy.exc import DBAPIError

from mosu.service.db.rows import EventRow, JobRow
from mosu.service.platform import Platform
from mosu.service.services import jobs
from tests.service.conftest import OPERATOR_TOKEN, TestClient, bearer, seed, submit


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"gpus": 1}, id="one whole GPU"),
        pytest.param({"gpus": 0.25, "gpu_type": "H800"}, id="a quarter GPU of a named type"),
        pytest.param({"gpus": 2, "replicas": 2, "kind": "inference"}, id="a two-replica service"),
        pytest.param({"gpus": 0.5, "priority": "high"}, id="a high-priority half GPU"),
    ],
)
def test_the_answer_to_a_submission_is_what_a_read_returns(api: TestClient, spec: dict) -> None:
    tokens = seed(api)
    answered = submit(api, tokens["a"], **spec)
    read = api.get(f"/v1/jobs/{answered['id']}").json()
    assert answered == read


def test_a_submission_commits_its_job_and_event_together(
    api: TestClient, platform: Platform
) -> None:
    tokens = seed(api)
    job = submit(api, tokens["a"], gpus=1)
    with platform.sessions() as s:
        events = list(s.scalars(select(EventRow).where(EventRow.job_id == job["id"])))
    assert [(e.tenant, e.to_state, e.reason) for e in events] == [("a", "pending", "submitted")]


def test_a_failed_event_insert_stores_no_job(
    api: TestClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = seed(api)
    # The event goes to a table that does not exist: the job insert before it must not stay.
    monkeypatch.setattr(jobs, "_INSERT_EVENT", insert(table("no_such_table")))
    with pytest.raises(DBAPIError):  # the test client re-raises what answered 500
        api.post("/v1/jobs", json={"name": "j", "command": ["true"]}, headers=bearer(tokens["a"]))
    with platform.sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 0


def test_concurrent_submissions_fail_alone_and_each_is_stored_with_its_event(
    api: TestClient, platform: Platform
) -> None:
    seed(api)
    app = api.app
    body = {"name": "j", "gpus": 1, "command": ["true"]}

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mosu", headers=headers
        ) as c:
            tenants = ["a", "b", "nope"] * 8
            return await asyncio.gather(
                *(c.post("/v1/jobs", params={"tenant": t}, json=body) for t in tenants)
            )

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 16 + [404] * 8
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    with platform.sessions() as s:
        stored = set(s.scalars(select(JobRow.id)))
        with_event = set(s.scalars(select(EventRow.job_id).where(EventRow.reason == "submitted")))
    assert stored == created == with_event
