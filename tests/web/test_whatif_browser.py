"""The What-if page in a real browser (Debian's Chromium, Playwright) against a real
``mosu up``: the operator fills the form, the replay runs in the background, the page
follows its progress and shows the before → after table, the fidelity line and the plot;
a tenant is refused. Plus the form's errors, through the app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosu.client import Client
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import OPERATOR_TOKEN, Server, free_port, wait_for
from tests.service.conftest import OPERATOR_TOKEN as APP_OPERATOR_TOKEN
from tests.web.conftest import browser, csrf_of, seed, sign_in
from tests.web.test_browser import chromium  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("whatif")
    env = dict(os.environ, MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN, MOSU_POLL_S="0.05")
    env["MOSU_CONFIG"] = str(root / "client.json")
    s = Server(
        data_dir=root / "data",
        port=free_port(),
        args=["--gpus", "8", "--gpu-type", "H800", "--min-runtime", "0", "--grace", "1"],
        env=env,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def history(server: Server) -> dict[str, str]:
    """acme and beta each ran short jobs that queued behind each other."""
    tokens = {}
    with server.client() as op:
        for name in ("acme", "beta"):
            tokens[name] = op.create_tenant(name, {"H800": QuotaSpec(guaranteed=4)}).token
    ids = []
    for name in ("acme", "beta", "acme", "beta"):
        with Client(server.url, tokens[name], timeout=10) as c:
            ids.append(c.submit(JobSpec(name="j", gpus=6, command=["sleep", "0.3"])).id)
    with server.client() as op:
        wait_for(
            lambda: all(op.get_job(j).state.value == "succeeded" for j in ids),
            timeout=60,
            what="the history's jobs to end",
        )
    return tokens


def test_the_operator_runs_a_whatif_from_the_page(
    chromium,  # noqa: F811
    server: Server,
    history: dict[str, str],
    tmp_path: Path,
):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(30_000)
        page.goto(f"{server.url}/ui/signin")
        page.fill("#token", OPERATOR_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/ui/")
        page.click("nav >> text=What if")
        page.wait_for_url(f"{server.url}/ui/whatif")
        page.fill("#set_guarantee", "acme=H800:8")
        page.fill("#add_nodes", "1x8:H800")
        page.fill("#rates", "H800=3")
        page.click("#whatif-run")
        page.wait_for_selector("#whatif-table")
        assert page.get_attribute("#whatif-state", "data-state") == "succeeded"
        rows = page.locator("#whatif-table tbody tr")
        assert rows.count() == 3  # acme, beta, all
        assert rows.nth(0).inner_text().startswith("acme")
        assert "credits" in page.inner_text("#whatif-table thead")
        assert "wait error median" in page.inner_text("#whatif-fidelity")
        page.wait_for_function("() => document.querySelector('#whatif-plot').naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "whatif.png"), full_page=True)
        page.goto(f"{server.url}/ui/whatif")
        assert (
            "guarantee acme H800=8; add nodes 1x8:H800; rates from the request"
            in page.inner_text("#whatif-tasks")
        )

        tenant = chromium.new_context()
        try:
            other = tenant.new_page()
            other.goto(f"{server.url}/ui/signin")
            other.fill("#token", history["acme"])
            other.click("button[type=submit]")
            other.wait_for_url(f"{server.url}/ui/")
            assert other.locator("nav >> text=What if").count() == 0
            response = other.goto(f"{server.url}/ui/whatif")
            assert response is not None and response.status == 403
        finally:
            tenant.close()
    finally:
        context.close()
    assert not errors, errors


def test_a_bad_change_is_shown_on_the_form(app, api):
    seed(api)
    tab = browser(app)
    csrf = sign_in(tab, APP_OPERATOR_TOKEN)
    form = tab.get("/ui/whatif")
    assert form.status_code == 200
    r = tab.post(
        "/ui/whatif",
        data={"csrf": csrf_of(form.text), "window": "all", "set_guarantee": "zeta=H800:4"},
    )
    assert r.status_code == 422
    assert "unknown tenant &#39;zeta&#39;" in r.text or "unknown tenant 'zeta'" in r.text
    assert 'value="zeta=H800:4"' in r.text  # the form keeps what was typed
    r = tab.post(
        "/ui/whatif",
        data={"csrf": csrf_of(form.text), "window": "all", "rates": "H800=-1"},
    )
    assert r.status_code == 422
    assert "expected TYPE=CREDITS_PER_HOUR" in r.text
    r = tab.post("/ui/whatif", data={"window": "all", "set_weight": "acme=2"})
    assert r.status_code == 403  # no CSRF token
    assert csrf
