"""Dashboard fixtures: the API's app (with the dashboard mounted) over a real store,
SQLite always and PostgreSQL when ``MOSU_TEST_POSTGRES_URL`` is set, and a signed-in
browser-like client (cookies, CSRF tokens read from the pages)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosu.service.app import create_app
from mosu.service.platform import Platform
from tests.service.conftest import (  # noqa: F401  (fixtures)
    OPERATOR_TOKEN,
    FakeExecutor,
    db_url,
    executor,
    open_platform,
    postgres_database,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def platform(db_url: str, tmp_path: Path, executor: FakeExecutor) -> Iterator[Platform]:  # noqa: F811
    # The history is read on every page here, so a page shows what a test just wrote.
    p = open_platform(
        tmp_path / "data", db_url, executor, grace_s=0.1, min_runtime_s=0, dashboard_history_s=0
    )
    yield p
    p.close()


@pytest.fixture
def app(platform: Platform):  # type: ignore[no-untyped-def]
    return create_app(platform)


def browser(app) -> TestClient:  # type: ignore[no-untyped-def]
    """A client that keeps cookies and follows no redirects, as a browser tab would."""
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def api(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
        yield client


def sign_in(client: TestClient, token: str) -> str:
    """Sign ``client`` in with ``token``; return the CSRF token its forms carry."""
    form = client.get("/ui/signin")
    assert form.status_code == 200
    r = client.post("/ui/signin", data={"token": token, "csrf": client.cookies.get("mosu_signin")})
    assert r.status_code == 303, r.text
    page = client.get("/ui/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def seed(api: TestClient) -> dict[str, str]:
    """Two nodes of 8 H800s; tenants acme (guarantee 4) and beta (guarantee 4, limit 12).
    Returns their tokens."""
    for name in ("n0", "n1"):
        r = api.post("/v1/nodes", json={"name": name, "gpu_type": "H800", "gpus": 8})
        assert r.status_code == 201, r.text
    tokens = {}
    for name, quota in (("acme", {"guaranteed": 4}), ("beta", {"guaranteed": 4, "limit": 12})):
        r = api.post("/v1/tenants", json={"name": name, "quotas": {"H800": quota}})
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    return tokens


def submit(api: TestClient, token: str, name: str, **spec: object) -> dict:
    r = api.post(
        "/v1/jobs",
        json={"name": name, "command": ["true"], **spec},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    return r.json()
