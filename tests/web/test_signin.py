"""Sign-in sessions: cookies, CSRF, sign-out, sessions shared through the store."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mosu.service.app import create_app
from mosu.service.db.rows import WebSessionRow
from mosu.service.platform import Platform
from tests.web.conftest import OPERATOR_TOKEN, browser, csrf_of, seed, sign_in, submit


def test_sign_in_sets_a_strict_httponly_session_cookie_and_sign_out_ends_it(app):
    tab = browser(app)
    assert tab.get("/ui/").headers["location"] == "/ui/signin"
    tab.get("/ui/signin")
    r = tab.post("/ui/signin", data={"token": OPERATOR_TOKEN, "csrf": tab.cookies["mosu_signin"]})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("mosu_session="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
    page = tab.get("/ui/")
    assert page.status_code == 200
    assert "operator" in page.text
    stolen = tab.cookies["mosu_session"]

    r = tab.post("/ui/signout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/signin"
    assert tab.get("/ui/").status_code == 303
    # The old cookie is worthless once signed out: the session row is gone.
    replay = browser(app)
    replay.cookies.set("mosu_session", stolen, path="/ui")
    assert replay.get("/ui/").status_code == 303


@pytest.mark.parametrize(
    ("token", "want"),
    [
        ("mosu_op_not-a-token", "unknown token"),
        ("", "paste the token alone"),
        ("two words", "paste the token alone"),
    ],
    ids=["unknown token", "empty", "with a space"],
)
def test_a_refused_token_opens_no_session_and_says_why(app, platform: Platform, token, want):
    tab = browser(app)
    tab.get("/ui/signin")
    r = tab.post("/ui/signin", data={"token": token, "csrf": tab.cookies["mosu_signin"]})
    assert r.status_code == 401
    assert want in r.text
    assert "mosu_session" not in tab.cookies
    with platform.sessions() as s:
        assert s.scalars(select(WebSessionRow)).all() == []


def test_sign_in_without_the_forms_csrf_token_is_refused(app):
    tab = browser(app)
    tab.get("/ui/signin")
    r = tab.post("/ui/signin", data={"token": OPERATOR_TOKEN, "csrf": "forged"})
    assert r.status_code == 403
    assert "mosu_session" not in tab.cookies


def test_the_store_holds_no_usable_token_and_the_cookie_is_not_the_token(app, platform: Platform):
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    assert tab.cookies["mosu_session"] != OPERATOR_TOKEN
    with platform.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, sealed_token, tenant FROM web_sessions").all()
    assert len(rows) == 1
    assert OPERATOR_TOKEN.encode() not in bytes(rows[0].sealed_token)
    assert rows[0].tenant is None
    # The cookie alone does not work as a bearer token on the API.
    r = browser(app).get(
        "/v1/jobs", headers={"Authorization": f"Bearer {tab.cookies['mosu_session']}"}
    )
    assert r.status_code == 401


def test_a_session_works_on_every_server_of_the_store_and_sign_out_ends_it_everywhere(
    app, platform: Platform, db_url, tmp_path, executor
):
    from tests.web.conftest import open_platform

    other = open_platform(tmp_path / "other", db_url, executor, dashboard_history_s=0)
    try:
        first, second = browser(app), browser(create_app(other))
        csrf = sign_in(first, OPERATOR_TOKEN)
        second.cookies.set("mosu_session", first.cookies["mosu_session"], path="/ui")
        assert second.get("/ui/jobs").status_code == 200
        first.post("/ui/signout", data={"csrf": csrf})
        assert second.get("/ui/jobs").status_code == 303
    finally:
        other.close()


def test_pages_without_a_session_send_browsers_to_sign_in_and_scripts_a_401(app):
    tab = browser(app)
    r = tab.get("/ui/queue?kind=train")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/signin")
    r = tab.get("/ui/", headers={"HX-Request": "true"})
    assert (r.status_code, r.headers["hx-redirect"]) == (401, "/ui/signin")
    r = tab.get("/ui/jobs/1/log", headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    # After signing in, the browser lands on the page it first asked for.
    tab.get("/ui/queue?kind=train")
    tab.get("/ui/signin")
    r = tab.post("/ui/signin", data={"token": OPERATOR_TOKEN, "csrf": tab.cookies["mosu_signin"]})
    assert r.headers["location"] == "/ui/queue?kind=train"


def test_after_sign_in_the_dashboard_never_redirects_off_site(app):
    tab = browser(app)
    tab.get("/ui/signin")
    tab.cookies.set("mosu_next", "//evil.example/ui/", path="/ui")
    r = tab.post("/ui/signin", data={"token": OPERATOR_TOKEN, "csrf": tab.cookies["mosu_signin"]})
    assert r.headers["location"] == "/ui/"


@pytest.mark.parametrize(
    ("form", "headers", "want_status"),
    [
        ({}, {}, 403),
        ({"csrf": "0" * 40}, {}, 403),
        ("valid", {"Origin": "http://evil.example"}, 403),
        ("valid", {}, 303),
        ("header", {}, 303),
    ],
    ids=[
        "no token",
        "a wrong token",
        "the right token from another site",
        "the right token",
        "the right token as X-CSRF-Token",
    ],
)
def test_a_state_changing_form_needs_its_csrf_token(app, api, form, headers, want_status):
    tokens = seed(api)
    job = submit(api, tokens["acme"], "eval-1")
    tab = browser(app)
    csrf = sign_in(tab, tokens["acme"])
    data = {"csrf": csrf} if form == "valid" else ({} if form == "header" else form)
    if form == "header":
        headers = {"X-CSRF-Token": csrf}
    r = tab.post(f"/ui/jobs/{job['id']}/cancel", data=data, headers=headers)
    assert r.status_code == want_status
    state = api.get(f"/v1/jobs/{job['id']}").json()["state"]
    assert state == ("cancelled" if want_status == 303 else "pending")
    if want_status == 403:
        assert "CSRF" in r.text or "another site" in r.text
