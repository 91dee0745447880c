"""Tokens as credentials: several named tokens per tenant, expiry, a last-used time written
at most once a minute, revocation (on one server at once; on every server sharing the store
within a second) and rotation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from mosu.service.db.rows import TokenRow
from mosu.service.platform import Platform
from mosu.service.services import auth as auth_service
from mosu.service.services.auth import (
    LAST_USED_RESOLUTION_S,
    OPERATOR,
    RECHECK_S,
    TokenCache,
    ensure_operator_token,
    hash_token,
)
from tests.e2e.conftest import free_port, wait_for
from tests.pg import fresh_postgres_database, postgres_url
from tests.service.conftest import OPERATOR_TOKEN, TestClient, bearer, seed


class Clocks:
    """Wall and monotonic time for a ``TokenCache`` (which the token routes read too),
    moved by the test alone: a slow request must not age a token."""

    def __init__(self) -> None:
        self.base = time.time()
        self.offset = 0.0
        self.mono = 0.0

    def wall(self) -> float:
        return self.base + self.offset

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.mono += seconds


@pytest.fixture
def clocks(platform: Platform) -> Clocks:
    clocks = Clocks()
    platform.tokens = TokenCache(clock=clocks.wall, monotonic=clocks.monotonic)
    return clocks


def test_a_tenant_holds_several_named_tokens(api: TestClient) -> None:
    tokens = seed(api)
    a = bearer(tokens["a"])
    ci = api.post("/v1/tokens", json={"name": "ci"}, headers=a)
    laptop = api.post("/v1/tokens", json={"name": "laptop", "expires_in": "30d"}, headers=a)
    assert (ci.status_code, laptop.status_code) == (201, 201)
    assert ci.json()["token"].startswith("mosu_t_")
    assert (ci.json()["info"]["tenant"], ci.json()["info"]["expires_at"]) == ("a", None)
    assert laptop.json()["info"]["expires_at"] is not None
    # Each works on its own, as tenant a.
    for issued in (ci, laptop):
        mine = api.get("/v1/tenants", headers=bearer(issued.json()["token"])).json()
        assert [t["name"] for t in mine] == ["a"]

    listed = api.get("/v1/tokens", headers=a).json()["tokens"]
    assert [(t["name"], t["current"]) for t in listed] == [
        (listed[0]["name"], True),
        ("ci", False),
        ("laptop", False),
    ]
    assert listed[0]["name"].startswith("token-")
    text = api.get("/v1/tokens", headers=a).text
    for issued in (tokens["a"], ci.json()["token"], laptop.json()["token"]):
        assert issued not in text

    again = api.post("/v1/tokens", json={"name": "ci"}, headers=a)
    assert (again.status_code, again.json()["error"]["field"]) == (409, "name")
    # Another tenant may use the name; it sees only its own tokens.
    b = bearer(tokens["b"])
    assert api.post("/v1/tokens", json={"name": "ci"}, headers=b).status_code == 201
    assert {t["tenant"] for t in api.get("/v1/tokens", headers=b).json()["tokens"]} == {"b"}
    assert api.get("/v1/tokens", params={"tenant": "a"}, headers=b).status_code == 404
    assert api.post("/v1/tokens", json={"tenant": "a"}, headers=b).status_code == 404
    # The operator sees every token, or one tenant's.
    assert len(api.get("/v1/tokens").json()["tokens"]) == 6  # the operator, a: 3, b: 2
    assert len(api.get("/v1/tokens", params={"tenant": "a"}).json()["tokens"]) == 3


def test_the_operator_issues_tokens_for_tenants_and_for_itself(api: TestClient) -> None:
    seed(api)
    for_a = api.post("/v1/tokens", json={"tenant": "a", "name": "bot"})
    assert (for_a.status_code, for_a.json()["info"]["tenant"]) == (201, "a")
    op = api.post("/v1/tokens", json={"name": "backup-operator"})
    assert op.json()["token"].startswith("mosu_op_")
    assert api.get("/v1/nodes", headers=bearer(op.json()["token"])).status_code == 200
    assert api.post("/v1/tokens", json={"tenant": "nobody"}).status_code == 404
    # The older route still issues a tenant token.
    older = api.post("/v1/tenants/a/tokens")
    assert (older.status_code, older.json()["info"]["tenant"]) == (201, "a")


def test_a_revoked_token_is_refused_at_once(api: TestClient) -> None:
    tokens = seed(api)
    a = bearer(tokens["a"])
    ci = api.post("/v1/tokens", json={"name": "ci"}, headers=a).json()
    ci_auth = bearer(ci["token"])
    assert api.get("/v1/jobs", headers=ci_auth).status_code == 200  # now cached

    # Another tenant cannot see it, let alone revoke it.
    other = api.delete(f"/v1/tokens/{ci['info']['id']}", headers=bearer(tokens["b"]))
    assert other.status_code == 404
    revoked = api.delete(f"/v1/tokens/{ci['info']['id']}", headers=a)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None

    refused = api.get("/v1/jobs", headers=ci_auth)
    assert (refused.status_code, refused.json()["error"]["message"]) == (401, "token revoked")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert [t["name"] for t in api.get("/v1/tokens", headers=a).json()["tokens"]] != ["ci"]
    everything = api.get("/v1/tokens", params={"all": "true"}, headers=a).json()["tokens"]
    assert [t["name"] for t in everything if t["revoked_at"]] == ["ci"]
    # Revoking again changes nothing; the name is free for a new token.
    assert api.delete(f"/v1/tokens/{ci['info']['id']}", headers=a).status_code == 200
    assert api.post("/v1/tokens", json={"name": "ci"}, headers=a).status_code == 201


def test_an_expired_token_is_refused(api: TestClient, platform: Platform, clocks: Clocks) -> None:
    tokens = seed(api)
    short = api.post(
        "/v1/tokens", json={"name": "short", "expires_in": 60}, headers=bearer(tokens["a"])
    ).json()
    auth = bearer(short["token"])
    assert api.get("/v1/jobs", headers=auth).status_code == 200
    clocks.advance(59)
    assert api.get("/v1/jobs", headers=auth).status_code == 200
    clocks.advance(2)
    refused = api.get("/v1/jobs", headers=auth)
    assert (refused.status_code, refused.json()["error"]["message"]) == (401, "token expired")
    assert short["token"] not in api.get("/v1/tokens", params={"all": "true"}).text
    # Listing leaves expired tokens out unless asked.
    with platform.sessions() as s:
        later = clocks.wall()
        live = auth_service.list_tokens(s, principal=OPERATOR, now=later)
        every = auth_service.list_tokens(s, principal=OPERATOR, now=later, include_dead=True)
    assert "short" not in [t.name for t in live]
    assert "short" in [t.name for t in every]


def test_a_tokens_lifetime_runs_on_the_clock_that_checks_it(
    api: TestClient, clocks: Clocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process's own clock disagrees with the platform's (as a slow request makes
    # it do): creation, listing and expiry still agree with each other.
    behind = SimpleNamespace(time=lambda: clocks.wall() - 30, monotonic=time.monotonic)
    monkeypatch.setattr(auth_service, "time", behind)
    tokens = seed(api)
    short = api.post(
        "/v1/tokens", json={"name": "short", "expires_in": 60}, headers=bearer(tokens["a"])
    ).json()
    clocks.advance(59)
    assert api.get("/v1/jobs", headers=bearer(short["token"])).status_code == 200
    listed = api.get("/v1/tokens", headers=bearer(tokens["a"])).json()["tokens"]
    assert "short" in [t["name"] for t in listed]
    clocks.advance(2)
    assert api.get("/v1/jobs", headers=bearer(short["token"])).status_code == 401
    listed = api.get("/v1/tokens", headers=bearer(tokens["a"])).json()["tokens"]
    assert "short" not in [t["name"] for t in listed]


@pytest.mark.parametrize(
    ("expires_in", "want_status"),
    [("0", 422), (0, 422), ("2y", 422), (400 * 86400, 422), (True, 422), ("12h", 201)],
)
def test_a_token_lifetime_is_checked(api: TestClient, expires_in, want_status) -> None:
    r = api.post("/v1/tokens", json={"expires_in": expires_in})
    assert r.status_code == want_status, r.text
    if want_status == 422:
        assert r.json()["error"]["field"] == "expires_in"


def test_last_use_is_written_at_most_once_a_minute(
    api: TestClient, platform: Platform, clocks: Clocks
) -> None:
    tokens = seed(api)
    auth = bearer(tokens["a"])

    def last_used() -> float | None:
        with platform.sessions() as s:
            return s.scalar(
                select(TokenRow.last_used_at).where(TokenRow.token_hash == hash_token(tokens["a"]))
            )

    assert last_used() is None
    for _ in range(5):
        api.get("/v1/jobs", headers=auth)
    first = last_used()
    assert first is not None
    # Rechecked every RECHECK_S, written only once LAST_USED_RESOLUTION_S has passed.
    for _ in range(10):
        clocks.advance(RECHECK_S)
        api.get("/v1/jobs", headers=auth)
    assert last_used() == first
    clocks.advance(LAST_USED_RESOLUTION_S)
    api.get("/v1/jobs", headers=auth)
    assert last_used() == pytest.approx(first + 10 * RECHECK_S + LAST_USED_RESOLUTION_S, abs=1)
    listed = api.get("/v1/tokens", headers=auth).json()["tokens"]
    assert listed[0]["last_used_at"] is not None


def test_a_revocation_made_elsewhere_is_seen_after_the_recheck_interval(
    api: TestClient, platform: Platform, clocks: Clocks
) -> None:
    """Another server sharing the store revokes: this server's cached check holds for at
    most RECHECK_S."""
    tokens = seed(api)
    auth = bearer(tokens["a"])
    assert api.get("/v1/jobs", headers=auth).status_code == 200
    with platform.tx() as s:  # what the other server's revocation writes
        row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(tokens["a"])))
        row.revoked_at = time.time()
    assert api.get("/v1/jobs", headers=auth).status_code == 200  # still within the check
    clocks.advance(RECHECK_S)
    assert api.get("/v1/jobs", headers=auth).status_code == 401


@pytest.mark.parametrize(
    ("b_revoked_elsewhere", "b_idle_s", "b_cached_after", "b_status_after"),
    [
        (False, 0.0, True, 200),
        (True, 0.0, False, 401),
        (False, auth_service.IN_USE_S, False, 200),
        (True, auth_service.IN_USE_S, False, 401),
    ],
    ids=["in use: read along", "revoked elsewhere: dropped", "idle: left", "idle, revoked"],
)
def test_a_recheck_reads_the_other_tokens_in_use_along(
    api: TestClient,
    platform: Platform,
    clocks: Clocks,
    b_revoked_elsewhere: bool,
    b_idle_s: float,
    b_cached_after: bool,
    b_status_after: int,
) -> None:
    """Tenant a's token has to be read again; tenant b's, used lately, is read in the same
    query, and a revocation of it made on another server is seen by that read."""
    tokens = seed(api)
    a, b = f"Bearer {tokens['a']}", f"Bearer {tokens['b']}"
    assert api.get("/v1/jobs", headers={"Authorization": b}).status_code == 200
    clocks.advance(b_idle_s)
    assert api.get("/v1/jobs", headers={"Authorization": a}).status_code == 200
    if b_revoked_elsewhere:
        with platform.tx() as s:
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(tokens["b"])))
            row.revoked_at = time.time()
    clocks.advance(RECHECK_S)
    assert platform.tokens.cached(a) is None and platform.tokens.cached(b) is None
    assert api.get("/v1/jobs", headers={"Authorization": a}).status_code == 200
    # a's read took b's along (or dropped it), unless b was idle.
    assert (platform.tokens.cached(b) is not None) is b_cached_after
    assert api.get("/v1/jobs", headers={"Authorization": b}).status_code == b_status_after


def test_no_token_is_trusted_longer_than_the_recheck_after_its_own_read(
    api: TestClient, platform: Platform, clocks: Clocks
) -> None:
    tokens = seed(api)
    a, b = f"Bearer {tokens['a']}", f"Bearer {tokens['b']}"
    api.get("/v1/jobs", headers={"Authorization": a})
    api.get("/v1/jobs", headers={"Authorization": b})
    with platform.tx() as s:  # another server revokes both
        for token in (tokens["a"], tokens["b"]):
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            row.revoked_at = time.time()
    clocks.advance(RECHECK_S - 0.01)
    assert platform.tokens.cached(b) is not None
    clocks.advance(0.01)
    assert platform.tokens.cached(a) is None and platform.tokens.cached(b) is None
    assert api.get("/v1/jobs", headers={"Authorization": b}).status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": a}).status_code == 401


def test_rotation_replaces_the_token_of_the_request(api: TestClient) -> None:
    tokens = seed(api)
    old = bearer(tokens["a"])
    name = api.get("/v1/tokens", headers=old).json()["tokens"][0]["name"]
    rotated = api.post("/v1/tokens/rotate", headers=old)
    assert rotated.status_code == 201
    new = bearer(rotated.json()["token"])
    assert rotated.json()["info"]["name"] == name
    assert api.get("/v1/jobs", headers=old).status_code == 401
    assert api.get("/v1/jobs", headers=new).status_code == 200
    listed = api.get("/v1/tokens", headers=new).json()["tokens"]
    assert [(t["name"], t["current"]) for t in listed] == [(name, True)]


def test_the_operator_rotates_its_own_token(api: TestClient, platform: Platform) -> None:
    rotated = api.post("/v1/tokens/rotate")
    assert rotated.status_code == 201
    new = rotated.json()["token"]
    assert new.startswith("mosu_op_")
    assert api.get("/v1/nodes").status_code == 401  # the client still sends the old one
    assert api.get("/v1/nodes", headers=bearer(new)).status_code == 200
    # A restart with the old token pinned does not bring it back.
    with platform.tx() as s:
        assert ensure_operator_token(s, token=OPERATOR_TOKEN) is None
    assert api.get("/v1/nodes").status_code == 401


def test_a_store_whose_operator_tokens_are_all_revoked_gets_a_new_one(
    api: TestClient, platform: Platform
) -> None:
    with platform.tx() as s:
        assert ensure_operator_token(s, token=None) is None  # one is live
        for row in s.scalars(select(TokenRow).where(TokenRow.tenant.is_(None))):
            row.revoked_at = time.time()
    with platform.tx() as s:
        fresh = ensure_operator_token(s, token=None)
    assert fresh is not None and fresh.startswith("mosu_op_")
    assert api.get("/v1/nodes", headers=bearer(fresh)).status_code == 200


# ---------------------------------------------------------------- two servers, one store


@pytest.fixture
def shared_database() -> Iterator[str]:
    with fresh_postgres_database(postgres_url(), "mosu_tokens") as url:
        yield url


def _server(url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "mosu.cli.main", "server", "--database-url", url]
    cmd += ["--data-dir", str(tmp_path / name), "--port", str(port)]
    env = dict(os.environ, MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN)
    log = tmp_path / f"server-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.postgres
def test_revocation_and_expiry_reach_every_server_sharing_the_store(
    shared_database: str, tmp_path: Path
) -> None:
    import httpx

    procs = []
    try:
        for name in ("a", "b"):
            procs.append(_server(shared_database, tmp_path, name))
        (_, url_a), (_, url_b) = procs
        for proc, url in procs:

            def up(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
                if proc.poll() is not None:
                    logs = "\n".join(p.read_text() for p in tmp_path.glob("server-*.log"))
                    raise AssertionError(f"a server exited:\n{logs}")
                try:
                    return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=60, what=f"the server at {url}")
        op = bearer(OPERATOR_TOKEN)
        created = httpx.post(f"{url_a}/v1/tenants", json={"name": "acme"}, headers=op)
        acme = bearer(created.json()["token"])
        ci = httpx.post(f"{url_a}/v1/tokens", json={"name": "ci"}, headers=acme).json()
        short = httpx.post(
            f"{url_a}/v1/tokens", json={"name": "short", "expires_in": 5}, headers=acme
        ).json()
        # Server b knows both tokens (checked and cached there).
        for issued in (ci, short):
            assert httpx.get(f"{url_b}/v1/jobs", headers=bearer(issued["token"])).status_code == 200

        revoked = httpx.delete(f"{url_a}/v1/tokens/{ci['info']['id']}", headers=acme)
        assert revoked.status_code == 200
        done = time.monotonic()
        assert httpx.get(f"{url_a}/v1/jobs", headers=bearer(ci["token"])).status_code == 401
        # b trusts its check for RECHECK_S (0.5 s): a request sent a second after the
        # revocation is refused however slow the machine. How soon b refused is printed.
        wait_for(
            lambda: httpx.get(f"{url_b}/v1/jobs", headers=bearer(ci["token"])).status_code == 401,
            timeout=10,
            what="server b to refuse the revoked token",
            every=0.02,
        )
        print(f"server b refused the revoked token {time.monotonic() - done:.2f} s after")
        time.sleep(max(0.0, done + 1.0 - time.monotonic()))
        assert httpx.get(f"{url_b}/v1/jobs", headers=bearer(ci["token"])).status_code == 401

        expires_at = time.time() + 5  # no earlier than the token's own expiry
        time.sleep(max(0.0, expires_at - time.time()) + 0.1)
        for url in (url_a, url_b):
            refused = httpx.get(f"{url}/v1/jobs", headers=bearer(short["token"]))
            assert (refused.status_code, refused.json()["error"]["message"]) == (
                401,
                "token expired",
            )
        assert httpx.get(f"{url_b}/v1/jobs", headers=acme).status_code == 200
    finally:
        for proc, _url in procs:
            proc.terminate()
        for proc, _url in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
