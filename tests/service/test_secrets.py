"""Tenants' secrets: sealed at rest, named by jobs, opened only into that tenant's replicas,
never returned by the API."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from mosu.core.api import JobState
from mosu.service.db.rows import JobRow, SecretRow
from mosu.service.platform import Platform
from mosu.service.secret_box import SecretBox, SecretKeyError
from mosu.service.settings import Settings
from tests.service.conftest import FakeExecutor, TestClient, bearer, open_platform, seed

VALUE = "hf_Secr3tValue-that-must-never-leak-1234567890"


def _store_bytes(platform: Platform, db_url: str) -> bytes:
    """Everything the store holds, as bytes: the SQLite files, or every column of every
    table of the PostgreSQL schema as text."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    chunks = []
    with platform.engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ).scalars()
        for table in list(tables):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                chunks.append(repr(tuple(row)).encode())
    return b"\n".join(chunks)


def test_a_secret_is_stored_sealed_and_never_returned(
    api: TestClient, platform: Platform, db_url: str
) -> None:
    tokens = seed(api)
    a = bearer(tokens["a"])
    created = api.put("/v1/secrets/HF_TOKEN", json={"value": VALUE}, headers=a)
    assert created.status_code == 201
    assert created.json()["name"] == "HF_TOKEN" and "value" not in created.json()
    replaced = api.put("/v1/secrets/HF_TOKEN", json={"value": VALUE + "-2"}, headers=a)
    assert replaced.status_code == 200
    listed = api.get("/v1/secrets", headers=a)
    assert [s["name"] for s in listed.json()["secrets"]] == ["HF_TOKEN"]
    assert api.get("/v1/secrets", params={"tenant": "a"}).json() == listed.json()

    job = api.post(
        "/v1/jobs", json={"name": "j", "command": "true", "secrets": ["HF_TOKEN"]}, headers=a
    )
    assert job.status_code == 201
    # Nothing the API answers holds the value.
    for path in ("/v1/secrets", "/v1/jobs", f"/v1/jobs/{job.json()['id']}", "/v1/events"):
        assert VALUE not in api.get(path, headers=a).text
        assert VALUE not in api.get(path).text
    assert job.json()["spec"]["secrets"] == ["HF_TOKEN"]
    # Nor does the store: only the sealed bytes.
    assert VALUE.encode() not in _store_bytes(platform, db_url)
    with platform.sessions() as s:
        row = s.get(SecretRow, ("a", "HF_TOKEN"))
        assert row is not None and row.key_id == platform.secret_box.key_id
        assert platform.secret_box.open("a", "HF_TOKEN", row.ciphertext) == VALUE + "-2"


def test_a_job_gets_its_tenants_secrets_in_its_environment(
    api: TestClient, platform: Platform, executor: FakeExecutor
) -> None:
    tokens = seed(api)
    a, b = bearer(tokens["a"]), bearer(tokens["b"])
    assert api.put("/v1/secrets/HF_TOKEN", json={"value": VALUE}, headers=a).status_code == 201
    assert api.put("/v1/secrets/HF_TOKEN", json={"value": "b's own"}, headers=b).status_code == 201
    spec = {"name": "j", "command": "true", "env": {"LR": "0.1"}, "secrets": ["HF_TOKEN"]}
    job_a = api.post("/v1/jobs", json=spec, headers=a).json()["id"]
    job_b = api.post("/v1/jobs", json=spec, headers=b).json()["id"]
    platform.loop.run_once()
    assert executor.launched[job_a].env == {"LR": "0.1", "HF_TOKEN": VALUE}
    assert executor.launched[job_b].env == {"LR": "0.1", "HF_TOKEN": "b's own"}
    assert VALUE not in repr(executor.launched[job_a])


def test_a_job_naming_a_missing_secret_is_refused_at_submission(api: TestClient) -> None:
    tokens = seed(api)
    a, b = bearer(tokens["a"]), bearer(tokens["b"])
    api.put("/v1/secrets/MINE", json={"value": VALUE}, headers=a)
    spec = {"name": "j", "command": "true", "secrets": ["MINE", "OTHER"]}
    r = api.post("/v1/jobs", json=spec, headers=a)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "secrets[1]")
    assert "mosu secret set OTHER" in r.json()["error"]["message"]
    # Another tenant's secret does not exist for b.
    r = api.post("/v1/jobs", json={**spec, "secrets": ["MINE"]}, headers=b)
    assert (r.status_code, r.json()["error"]["field"]) == (422, "secrets[0]")
    for bad, field in (
        ({"secrets": ["MOSU_TOKEN"]}, "secrets[0]"),
        ({"secrets": ["MINE", "MINE"]}, "secrets"),
        ({"secrets": ["MINE"], "env": {"MINE": "x"}}, "secrets"),
    ):
        r = api.post("/v1/jobs", json={"name": "j", "command": "true", **bad}, headers=a)
        assert (r.status_code, r.json()["error"]["field"]) == (422, field), bad
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_secrets_are_the_tenants_own(api: TestClient) -> None:
    tokens = seed(api)
    a, b = bearer(tokens["a"]), bearer(tokens["b"])
    api.put("/v1/secrets/MINE", json={"value": VALUE}, headers=a)
    assert api.get("/v1/secrets", headers=b).json()["secrets"] == []
    assert api.get("/v1/secrets", params={"tenant": "a"}, headers=b).status_code == 404
    assert api.delete("/v1/secrets/MINE", headers=b).status_code == 404
    assert api.delete("/v1/secrets/MINE", params={"tenant": "a"}, headers=b).status_code == 404
    assert api.put("/v1/secrets/X", json={"value": "v"}).status_code == 422  # which tenant?
    assert api.put("/v1/secrets/X", params={"tenant": "zz"}, json={"value": "v"}).status_code == 404
    assert api.delete("/v1/secrets/MINE", headers=a).status_code == 204
    assert api.get("/v1/secrets", headers=a).json()["secrets"] == []
    assert api.delete("/v1/secrets/MINE", headers=a).status_code == 404


def test_a_secret_deleted_before_launch_fails_the_job_saying_why(
    api: TestClient, platform: Platform, executor: FakeExecutor
) -> None:
    tokens = seed(api)
    a = bearer(tokens["a"])
    api.put("/v1/secrets/GONE", json={"value": VALUE}, headers=a)
    job = api.post(
        "/v1/jobs", json={"name": "j", "command": "true", "secrets": ["GONE"]}, headers=a
    )
    api.delete("/v1/secrets/GONE", headers=a)
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job.json()['id']}", headers=a).json()
    assert got["state"] == JobState.FAILED
    assert got["message"] == "could not start: secret GONE no longer exists"
    assert got["allocations"] == []
    assert executor.launched == {}
    # Its GPUs are free again: the next job starts.
    nxt = api.post("/v1/jobs", json={"name": "k", "command": "true", "gpus": 4}, headers=a)
    platform.loop.run_once()
    assert api.get(f"/v1/jobs/{nxt.json()['id']}", headers=a).json()["state"] == "running"


def test_a_sealed_secret_moved_to_another_tenant_does_not_open(
    api: TestClient, platform: Platform, executor: FakeExecutor
) -> None:
    """Someone with write access to the store copies tenant a's sealed secret to tenant b's
    row: b's job must not get a's value."""
    tokens = seed(api)
    a, b = bearer(tokens["a"]), bearer(tokens["b"])
    api.put("/v1/secrets/HF_TOKEN", json={"value": VALUE}, headers=a)
    api.put("/v1/secrets/HF_TOKEN", json={"value": "b's own"}, headers=b)
    with platform.tx() as s:
        stolen = s.scalar(select(SecretRow.ciphertext).where(SecretRow.tenant == "a"))
        s.execute(update(SecretRow).where(SecretRow.tenant == "b").values(ciphertext=stolen))
    job = api.post(
        "/v1/jobs", json={"name": "j", "command": "true", "secrets": ["HF_TOKEN"]}, headers=b
    )
    platform.loop.run_once()
    got = api.get(f"/v1/jobs/{job.json()['id']}", headers=b).json()
    assert got["state"] == "failed" and "does not open" in got["message"]
    assert VALUE not in got["message"]
    assert executor.launched == {}


def test_the_key_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        box = SecretBox.from_file(tmp_path / "data" / "secrets.key")
    finally:
        os.umask(old)
    key = tmp_path / "data" / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert list((tmp_path / "data").iterdir()) == [key]  # no temporary file left
    again = SecretBox.from_file(key)
    assert again.key_id == box.key_id
    assert again.open("t", "n", box.seal("t", "n", "v")) == "v"


def test_servers_of_one_store_must_share_the_key(
    api: TestClient, db_url: str, tmp_path: Path
) -> None:
    tokens = seed(api)
    # Before any secret, another server with a key of its own may start...
    other = open_platform(tmp_path / "other", db_url, FakeExecutor())
    other.close()
    # ...but once the store holds a secret, it names the key, and that server may not.
    api.put("/v1/secrets/S", json={"value": VALUE}, headers=bearer(tokens["a"]))
    refused = Platform(
        Settings(data_dir=tmp_path / "other", database_url=db_url, operator_token="t"),
        FakeExecutor(),
    )
    try:
        with pytest.raises(SecretKeyError, match="give every server the same key file"):
            refused.open()
    finally:
        refused.close()
    shared = open_platform(
        tmp_path / "third",
        db_url,
        FakeExecutor(),
        secrets_key_file=tmp_path / "data" / "secrets.key",
    )
    shared.close()


def test_a_server_with_another_key_may_not_seal_a_secret(
    platform: Platform, api: TestClient, db_url: str, tmp_path: Path
) -> None:
    tokens = seed(api)
    other = open_platform(tmp_path / "other", db_url, FakeExecutor())  # no secret yet: it starts
    try:
        api.put("/v1/secrets/S", json={"value": VALUE}, headers=bearer(tokens["a"]))
        from mosu.service.app import create_app

        with TestClient(create_app(other)) as c:
            r = c.put("/v1/secrets/T", json={"value": "v"}, headers=bearer(tokens["a"]))
        assert r.status_code == 409
        assert "MOSU_SECRETS_KEY_FILE" in r.json()["error"]["message"]
    finally:
        other.close()
    with platform.sessions() as s:
        assert list(s.scalars(select(SecretRow.name))) == ["S"]
        assert s.scalar(select(JobRow.id)) is None
