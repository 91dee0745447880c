"""The HTTP client rebuilds the typed error from an error body (httpx MockTransport)."""

from __future__ import annotations

import httpx
import pytest

from mosu.client import Client, ServerUnreachable
from mosu.core.errors import CapacityError, NotFound, PlatformError, Unauthorized


def client_answering(status: int, body: object | None = None, text: str = "") -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        if body is not None:
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=text)

    return Client("http://mosu.test", "tok", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "code", "want_type"),
    [
        (404, "not-found", NotFound),
        (422, "capacity", CapacityError),
        (401, "unauthorized", Unauthorized),
    ],
)
def test_error_bodies_become_typed_errors(status, code, want_type):
    body = {"error": {"code": code, "message": "no job 7", "field": "job_id"}}
    with client_answering(status, body) as c, pytest.raises(want_type) as caught:
        c.get_job(7)
    assert (caught.value.message, caught.value.field) == ("no job 7", "job_id")


def test_a_non_json_error_keeps_the_status():
    with client_answering(502, text="bad gateway") as c, pytest.raises(PlatformError) as caught:
        c.queue()
    assert str(caught.value) == "server answered 502: bad gateway"


def test_an_unreachable_server_says_how_to_fix_it():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    c = Client("http://127.0.0.1:9", "tok", transport=httpx.MockTransport(refuse))
    with pytest.raises(ServerUnreachable) as caught:
        c.list_jobs()
    assert "start it with 'mosu up' or set MOSU_URL" in str(caught.value)
