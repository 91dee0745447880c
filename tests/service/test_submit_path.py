"""The submit path: what it answers is what was stored, and a job is never stored without
its "submitted" event."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import func, insert, select, table
from sqlalchemy.exc import DBAPIError

from mosu.core.api import JobSpec
from mosu.core.submission import Submission
from mosu.service.db.rows import EventRow, JobRow
from mosu.service.platform import Platform
from mosu.service.routers import jobs as jobs_router
from mosu.service.services import jobs
from mosu.service.services.auth import OPERATOR, Principal
from mosu.service.submissions import _Submission
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


def test_one_poisoned_submission_never_fails_another(api: TestClient, platform: Platform) -> None:
    """10 rounds of 39 good submissions from two tenants with one NUL among them, all at
    once: every good one is 201, the poisoned one a 422 naming its field."""
    tokens = seed(api)
    app = api.app
    good = {"name": "good", "gpus": 1, "command": ["true"]}
    bad = {"name": "bad\x00", "gpus": 1, "command": ["true"]}

    async def rounds() -> list[tuple[bool, httpx.Response]]:
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mosu") as c:
            for _ in range(10):
                sends = [
                    (True, c.post("/v1/jobs", json=good, headers=bearer(tokens["ab"[k % 2]])))
                    for k in range(39)
                ]
                sends.insert(20, (False, c.post("/v1/jobs", json=bad, headers=bearer(tokens["a"]))))
                answers = await asyncio.gather(*(send for _, send in sends))
                out += [(is_good, a) for (is_good, _), a in zip(sends, answers, strict=True)]
        return out

    answers = asyncio.run(rounds())
    assert sorted(r.status_code for ok, r in answers if ok) == [201] * 390
    poisoned = [r for ok, r in answers if not ok]
    assert [(r.status_code, r.json()["error"]["field"]) for r in poisoned] == [(422, "name")] * 10
    with platform.sessions() as s:
        stored = s.scalar(select(func.count()).select_from(JobRow))
    assert stored == 390


def test_a_batch_the_store_refuses_is_stored_again_one_by_one(
    api: TestClient, platform: Platform
) -> None:
    """Past every check (built without validation), a submission whose values the store
    refuses, in one batch with 39 good ones from two tenants: the 39 are stored, it fails."""
    seed(api)
    writer = api.app.state.submit_writer
    good = Submission.of(JobSpec(name="good", gpus=1, command=["true"]))
    # Neither store takes a priority of 2**70 (SQLite: 64-bit integers; PostgreSQL: 32-bit).
    poison = dataclasses.replace(good, priority=2**70)
    loop = asyncio.new_event_loop()
    try:
        batch = [
            _Submission(OPERATOR, good, "ab"[k % 2], None, loop, loop.create_future())
            for k in range(39)
        ]
        batch.insert(7, _Submission(OPERATOR, poison, "a", None, loop, loop.create_future()))
        writer._store(batch)  # the writer thread's step, on one batch we chose
        loop.run_until_complete(asyncio.sleep(0))
        results = [item.future for item in batch]
        assert all(f.done() for f in results)
        failed = [i for i, f in enumerate(results) if f.exception() is not None]
        stored = [f.result().job.tenant for f in results if f.exception() is None]
    finally:
        loop.close()
    assert failed == [7]
    assert sorted(stored) == ["a"] * 20 + ["b"] * 19
    assert writer.retried_alone == 40
    with platform.sessions() as s:
        names = list(s.scalars(select(JobRow.name)))
        submitted = s.scalar(
            select(func.count()).select_from(EventRow).where(EventRow.reason == "submitted")
        )
    assert (names, submitted) == (["good"] * 39, 39)


def test_one_batch_answers_each_submission_with_its_own_stored_job(
    api: TestClient, platform: Platform
) -> None:
    """A batch's jobs go in one statement: each answer is the row made from its own spec,
    failed checks in between shift nothing."""
    seed(api)
    writer = api.app.state.submit_writer
    loop = asyncio.new_event_loop()
    try:
        batch = []
        for k in range(30):
            tenant = "nope" if k % 7 == 3 else ("a", "b")[k % 2]
            spec = Submission.of(
                JobSpec.model_validate({"name": f"j{k}", "gpus": 1 + k % 3, "command": ["true"]})
            )
            batch.append(_Submission(OPERATOR, spec, tenant, None, loop, loop.create_future()))
        writer._store(batch)
        loop.run_until_complete(asyncio.sleep(0))
        answers = {}
        for k, item in enumerate(batch):
            if k % 7 == 3:
                assert item.future.exception() is not None
                continue
            job = item.future.result().job
            assert (job.name, job.tenant, job.gpus) == (f"j{k}", ("a", "b")[k % 2], 1 + k % 3)
            answers[job.id] = (job.name, job.tenant, job.gpus)
    finally:
        loop.close()
    with platform.sessions() as s:
        rows = {r.id: (r.name, r.tenant, r.gpus) for r in s.scalars(select(JobRow))}
        events = set(s.scalars(select(EventRow.job_id).where(EventRow.reason == "submitted")))
    assert rows == answers
    assert events == set(answers)


def _submit_both_ways(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str], **request: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The same request through ``SubmitRoute``'s short path and through the declared
    route's dependency resolution (a well-formed key made different, so the second is no
    retry of the first)."""
    short = api.post("/v1/jobs", headers=headers, **request)
    if headers.get("Idempotency-Key") == "k-1":
        headers = {**headers, "Idempotency-Key": "k-2"}
    with monkeypatch.context() as m:
        m.setattr(jobs_router, "_known_arguments", lambda _request: None)
        declared = api.post("/v1/jobs", headers=headers, **request)
    return short, declared


def _comparable(r: httpx.Response) -> tuple[int, object, str | None]:
    body = r.json()
    if isinstance(body, dict):
        body.pop("id", None)
        body.pop("submitted_at", None)
    return r.status_code, body, r.headers.get("Idempotent-Replayed")


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        pytest.param({}, {}, id="plain"),
        pytest.param({"Idempotency-Key": "k-1"}, {}, id="with a key"),
        pytest.param({"Idempotency-Key": "bad key"}, {}, id="a malformed key"),
        pytest.param({"Idempotency-Key": "x" * 256}, {}, id="a key too long"),
        pytest.param({}, {"tenant": "b"}, id="another tenant named"),
        pytest.param({"Authorization": "Bearer mosu_t_unknown"}, {}, id="an unknown token"),
        pytest.param({"Authorization": "Basic abc"}, {}, id="no bearer token"),
    ],
)
def test_the_short_path_answers_what_the_declared_route_answers(
    api: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    tokens = seed(api)
    submit(api, tokens["a"])  # the token is now one checked a moment ago
    body = {"name": "j", "command": ["true"], "gpus": 1}
    sent = {**bearer(tokens["a"]), **headers}
    short, declared = _submit_both_ways(api, monkeypatch, sent, json=body, params=params)
    assert _comparable(short) == _comparable(declared)
    if short.status_code == 201 and "Idempotency-Key" in headers:
        # A retry of the first through the declared route: the same job, replayed.
        with monkeypatch.context() as m:
            m.setattr(jobs_router, "_known_arguments", lambda _request: None)
            retry = api.post("/v1/jobs", headers=sent, json=body, params=params)
        assert retry.json() == short.json()
        assert retry.headers["Idempotent-Replayed"] == "true"


def _request(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> Request:
    app = FastAPI()
    return Request({"type": "http", "headers": headers, "query_string": query, "app": app})


def test_the_short_path_is_taken_only_when_the_arguments_need_no_resolution(
    api: TestClient, platform: Platform
) -> None:
    tokens = seed(api)
    submit(api, tokens["a"])
    auth = (b"authorization", f"Bearer {tokens['a']}".encode())

    def known(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> object:
        request = _request(headers, query)
        request.app.state.platform = platform
        return jobs_router._known_arguments(request)

    found = known([auth, (b"idempotency-key", b"k")])
    assert found is not None
    assert found[1:] == (Principal(tenant="a", token_id=found[1].token_id), "k")
    assert known([auth])[2] is None  # type: ignore[index]
    assert known([auth], b"tenant=a") is None
    assert known([auth, (b"idempotency-key", b"k"), (b"idempotency-key", b"k")]) is None
    assert known([auth, (b"idempotency-key", b"")]) is None
    assert known([auth, (b"idempotency-key", "ké".encode("latin-1"))]) is None
    assert known([(b"authorization", b"Bearer mosu_t_nobody")]) is None
    assert known([]) is None


def test_submissions_are_matched_first_and_documented_once(api: TestClient) -> None:
    app = api.app
    assert isinstance(app, FastAPI)
    first = app.router.routes[0]
    assert isinstance(first, jobs_router.SubmitRoute)
    assert (first.path, first.methods, first.include_in_schema) == ("/v1/jobs", {"POST"}, False)
    documented = app.openapi()["paths"]["/v1/jobs"]
    assert set(documented) == {"get", "post"}
    assert documented["post"]["operationId"].startswith("submit_job")


def test_the_short_path_gives_an_attacker_nothing_the_declared_route_refuses(
    api: TestClient,
) -> None:
    tokens = seed(api)
    a, b = bearer(tokens["a"]), bearer(tokens["b"])
    body = {"name": "j", "command": ["true"], "gpus": 1}
    submit(api, tokens["a"])  # a's token is now one checked a moment ago

    # Naming another tenant leaves the short path and is refused there.
    other = api.post("/v1/jobs", headers=a, json=body, params={"tenant": "b"})
    assert 400 <= other.status_code < 500
    assert api.get("/v1/jobs", headers=b).json()["jobs"] == []

    # Another tenant's idempotency key replays nothing of a's: keys belong to their tenant.
    mine = api.post("/v1/jobs", headers={**a, "Idempotency-Key": "k"}, json=body)
    theirs = api.post("/v1/jobs", headers={**b, "Idempotency-Key": "k"}, json=body)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert theirs.json()["tenant"] == "b" and theirs.json()["id"] != mine.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers

    # A token revoked a moment after its last check is refused at once, not served from
    # the cache the short path reads.
    ci = api.post("/v1/tokens", json={"name": "ci"}, headers=a).json()
    ci_auth = bearer(ci["token"])
    assert api.post("/v1/jobs", headers=ci_auth, json=body).status_code == 201
    assert api.delete(f"/v1/tokens/{ci['info']['id']}", headers=a).status_code == 200
    before = len(api.get("/v1/jobs", headers=a).json()["jobs"])
    refused = api.post("/v1/jobs", headers=ci_auth, json=body)
    assert (refused.status_code, refused.json()["error"]["message"]) == (401, "token revoked")
    assert len(api.get("/v1/jobs", headers=a).json()["jobs"]) == before
