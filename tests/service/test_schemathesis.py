"""Property-based requests generated from the OpenAPI spec: none may produce a 5xx.

Bounded (a few examples per operation) so the whole run takes seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from mosu.service.app import create_app
from mosu.service.platform import Platform
from mosu.service.settings import Settings
from tests.service.conftest import OPERATOR_TOKEN, FakeExecutor, TestClient, seed


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[object]:
    settings_ = Settings(data_dir=tmp_path, operator_token=OPERATOR_TOKEN, min_runtime_s=0)
    platform = Platform(settings_, FakeExecutor())
    platform.open()
    app = create_app(platform)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
        tokens = seed(client)
        client.post(
            "/v1/jobs",
            json={"name": "j", "gpus": 2, "command": "true"},
            headers={"Authorization": f"Bearer {tokens['a']}"},
        )
        platform.loop.run_once()
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    platform.close()


def test_no_request_produces_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        _fuzz(operation)


def _fuzz(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=10,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        if case.path.endswith("/events/stream"):
            # Unbounded, the stream runs until the client leaves; bound every generated
            # request so each example ends, whatever else it asks for.
            case.query = {**(case.query or {}), "wait_s": 0.2}
        response = case.call(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        where = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, f"{where}: {response.text}"
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, where

    run()
