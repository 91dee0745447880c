"""Exactly-once submissions: an ``Idempotency-Key`` makes a retry return the first
submission's job; the client sends one and retries dropped connections and 503s."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from mosu.client import Client, ServerUnreachable
from mosu.core.api import JobSpec
from mosu.core.errors import IdempotencyKeyReused
from mosu.core.submission import Submission
from mosu.service.db.rows import JobRow, SubmissionKeyRow
from mosu.service.platform import Platform
from mosu.service.services.auth import OPERATOR
from mosu.service.submissions import KEY_KEEP_S, PRUNE_EVERY_S, _Submission
from tests.e2e.conftest import OPERATOR_TOKEN, make_server, wait_for  # noqa: F401
from tests.service.conftest import TestClient, bearer, seed

SPEC = {"name": "once", "command": ["true"], "gpus": 1}


def _jobs(platform: Platform) -> int:
    with platform.sessions() as s:
        return s.scalar(select(func.count()).select_from(JobRow)) or 0


def test_the_same_key_returns_the_same_job(api: TestClient, platform: Platform) -> None:
    tokens = seed(api)
    headers = bearer(tokens["a"]) | {"Idempotency-Key": "key-1"}
    first = api.post("/v1/jobs", json=SPEC, headers=headers)
    again = api.post("/v1/jobs", json=SPEC, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    # The same spec as YAML is the same submission.
    yaml = api.post(
        "/v1/jobs",
        content=b'name: once\ncommand: ["true"]\ngpus: 1\n',
        headers=headers | {"Content-Type": "application/yaml"},
    )
    assert yaml.json()["id"] == first.json()["id"]
    # The operator submitting for tenant a shares a's keys.
    for_a = api.post(
        "/v1/jobs", json=SPEC, params={"tenant": "a"}, headers={"Idempotency-Key": "key-1"}
    )
    assert for_a.json()["id"] == first.json()["id"]
    assert _jobs(platform) == 1


def test_keys_are_per_tenant_and_a_new_key_is_a_new_job(
    api: TestClient, platform: Platform
) -> None:
    tokens = seed(api)
    a = api.post("/v1/jobs", json=SPEC, headers=bearer(tokens["a"]) | {"Idempotency-Key": "k"})
    b = api.post("/v1/jobs", json=SPEC, headers=bearer(tokens["b"]) | {"Idempotency-Key": "k"})
    other = api.post("/v1/jobs", json=SPEC, headers=bearer(tokens["a"]) | {"Idempotency-Key": "k2"})
    unkeyed = [api.post("/v1/jobs", json=SPEC, headers=bearer(tokens["a"])) for _ in range(2)]
    ids = {r.json()["id"] for r in (a, b, other, *unkeyed)}
    assert len(ids) == 5 and _jobs(platform) == 5
    assert (b.json()["tenant"], a.json()["tenant"]) == ("b", "a")


def test_the_same_key_with_another_spec_is_refused(api: TestClient, platform: Platform) -> None:
    tokens = seed(api)
    headers = bearer(tokens["a"]) | {"Idempotency-Key": "reused"}
    first = api.post("/v1/jobs", json=SPEC, headers=headers)
    changed = api.post("/v1/jobs", json={**SPEC, "gpus": 2}, headers=headers)
    assert changed.status_code == 422
    error = changed.json()["error"]
    assert (error["code"], error["field"]) == ("idempotency-key-reused", "Idempotency-Key")
    assert f"job {first.json()['id']}" in error["message"]
    assert _jobs(platform) == 1


@pytest.mark.parametrize("key", ["", "a key", "k\u00e9y", "x" * 256, "tab\tkey"])
def test_a_malformed_key_is_422_naming_the_header(api: TestClient, key: str) -> None:
    tokens = seed(api)
    r = api.post(
        "/v1/jobs",
        json=SPEC,
        headers={"Authorization": f"Bearer {tokens['a']}", "Idempotency-Key": key.encode()},
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "Idempotency-Key")


def test_a_replay_returns_the_job_even_if_it_could_no_longer_be_submitted(
    api: TestClient,
) -> None:
    """The first answer was lost, the cluster changed since: the retry still gets the job
    (it was accepted), not a refusal of a job it already has."""
    tokens = seed(api)
    headers = bearer(tokens["a"]) | {"Idempotency-Key": "before-the-change"}
    spec = {**SPEC, "gpus": 8}
    first = api.post("/v1/jobs", json=spec, headers=headers)
    api.post("/v1/nodes", json={"name": "n0", "gpu_type": "H800", "gpus": 4})  # shrunk
    assert api.post("/v1/jobs", json=spec, headers=bearer(tokens["a"])).status_code == 422
    again = api.post("/v1/jobs", json=spec, headers=headers)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


def test_keys_older_than_a_day_are_pruned(api: TestClient, platform: Platform) -> None:
    tokens = seed(api)
    headers = bearer(tokens["a"]) | {"Idempotency-Key": "old"}
    first = api.post("/v1/jobs", json=SPEC, headers=headers).json()["id"]
    writer = api.app.state.submit_writer
    with platform.tx() as s:
        row = s.get(SubmissionKeyRow, ("a", "old"))
        row.created_at -= KEY_KEEP_S + 1
    writer._pruned_at -= PRUNE_EVERY_S
    api.post("/v1/jobs", json=SPEC, headers=bearer(tokens["a"]) | {"Idempotency-Key": "new"})

    def keys() -> list[str]:
        with platform.sessions() as s:
            return sorted(s.scalars(select(SubmissionKeyRow.key)))

    # The writer prunes after answering its batch.
    wait_for(lambda: keys() == ["new"], timeout=30, what="the old key to be pruned")
    assert api.post("/v1/jobs", json=SPEC, headers=headers).json()["id"] != first


# ---------------------------------------------------------------- the client


def test_the_client_retries_a_dropped_answer_with_the_same_key() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Idempotency-Key"])
        if len(seen) == 1:
            raise httpx.ReadError("connection reset by peer", request=request)
        if len(seen) == 2:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}})
        body = json.loads(request.content)
        return httpx.Response(201, json=_job_out(7, body["name"]))

    waits: list[float] = []
    with Client(
        "http://mosu.test", "tok", transport=httpx.MockTransport(handler), sleep=waits.append
    ) as c:
        job = c.submit(JobSpec(name="j", command=["true"]))
    assert job.id == 7
    assert len(seen) == 3 and len(set(seen)) == 1 and len(seen[0]) == 32
    assert waits == [0.25, 0.5]


def test_the_client_gives_up_after_its_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    waits: list[float] = []
    with (
        Client(
            "http://mosu.test",
            "tok",
            transport=httpx.MockTransport(handler),
            sleep=waits.append,
            retry_delays_s=(0.1, 0.2),
        ) as c,
        pytest.raises(ServerUnreachable),
    ):
        c.submit(JobSpec(name="j", command=["true"]))
    assert waits == [0.1, 0.2]


def test_the_client_does_not_retry_a_refusal() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        error = {"code": "idempotency-key-reused", "message": "used", "field": "Idempotency-Key"}
        return httpx.Response(422, json={"error": error})

    transport = httpx.MockTransport(handler)
    with (
        Client("http://mosu.test", "tok", transport=transport) as c,
        pytest.raises(IdempotencyKeyReused),
    ):
        c.submit(JobSpec(name="j", command=["true"]), idempotency_key="mine")
    assert [r.headers["Idempotency-Key"] for r in calls] == ["mine"]


def _job_out(job_id: int, name: str) -> dict[str, object]:
    return {
        "id": job_id,
        "name": name,
        "tenant": "a",
        "kind": "train",
        "state": "pending",
        "priority": 50,
        "replicas": 1,
        "gpus": 1.0,
        "gpu_types": [],
        "submitted_at": "2025-01-01T00:00:00Z",
    }


# ---------------------------------------------------------------- a real server


def test_a_submission_retried_after_a_cut_connection_is_one_job(make_server):  # noqa: F811
    """A real server; the first attempt's connection is cut right after the request is
    sent (the client never hears the answer); the retry gets the same job."""
    server = make_server("--gpus", "8", "--gpu-type", "H800")
    with server.client() as op:
        token = op.create_tenant("acme", {}).token
    name = f"cut-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name, "command": ["true"], "gpus": 1}).encode()
    key = uuid.uuid4().hex
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_RDWR)  # hang up without reading the answer

    with Client(server.url, token, timeout=10) as acme:
        # The server went on and stored it; the client, not knowing, sends it again.
        wait_for(
            lambda: any(j.name == name for j in acme.list_jobs()),
            timeout=30,
            what="the first attempt to be stored",
        )
        retried = acme.submit(JobSpec.model_validate(json.loads(body)), idempotency_key=key)
        jobs = [j for j in acme.list_jobs(limit=10_000) if j.name == name]
    assert [j.id for j in jobs] == [retried.id]


def test_the_client_retries_through_a_connection_cut_after_sending(make_server) -> None:  # noqa: F811
    """The client's own retry against a real server: the transport sends the request,
    drops the answer once, and reports the connection as reset."""
    server = make_server("--gpus", "8", "--gpu-type", "H800")
    with server.client() as op:
        token = op.create_tenant("acme", {}).token

    class CutOnce(httpx.HTTPTransport):
        cut = False

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.method == "POST" and not self.cut:
                self.cut = True
                response.read()  # the server answered; the answer is lost on the way
                response.close()
                raise httpx.RemoteProtocolError("server disconnected", request=request)
            return response

    transport = CutOnce()
    with Client(server.url, token, timeout=10, transport=transport, sleep=lambda _s: None) as c:
        job = c.submit(JobSpec(name="cut-once", command=["true"]))
        same = [j for j in c.list_jobs() if j.name == "cut-once"]
    assert transport.cut
    assert [j.id for j in same] == [job.id]
    with Client(server.url, OPERATOR_TOKEN) as op:
        assert len(op.list_jobs()) == 1


def test_one_batch_with_a_key_twice_makes_one_job(api: TestClient, platform: Platform) -> None:
    """Retries that arrive together land in one batch (one transaction): the second finds
    the key the first stored moments before."""
    seed(api)
    writer = api.app.state.submit_writer
    spec = Submission.of(JobSpec.model_validate(SPEC))
    other = Submission.of(JobSpec.model_validate({**SPEC, "gpus": 2}))
    loop = asyncio.new_event_loop()
    try:
        batch = [
            _Submission(OPERATOR, s, "a", key, loop, loop.create_future())
            for s, key in ((spec, "k"), (spec, "k"), (other, "k"), (spec, None))
        ]
        writer._store(batch)
        loop.run_until_complete(asyncio.sleep(0))
        first, again, changed, unkeyed = (item.future for item in batch)
        assert (first.result().replayed, again.result().replayed) == (False, True)
        assert again.result().job.id == first.result().job.id
        assert isinstance(changed.exception(), IdempotencyKeyReused)
        assert unkeyed.result().job.id != first.result().job.id
    finally:
        loop.close()
    assert _jobs(platform) == 2
