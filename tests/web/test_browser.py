"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a
real ``mosu up``: real processes, the local executor, SQLite.

Screenshots of every page are saved under the test's temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosu.client import Client
from mosu.core.api import JobSpec, QuotaSpec
from tests.e2e.conftest import OPERATOR_TOKEN, Server, free_port, wait_for

CHROMIUM = os.environ.get("MOSU_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECRET = "beta-secret"
"""Every job of tenant beta is named with this: tenant acme must never see it."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dashboard")
    env = dict(os.environ)
    env.update(
        MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN,
        MOSU_CONFIG=str(root / "client.json"),
        MOSU_POLL_S="0.05",
        MOSU_DASHBOARD_HISTORY_S="0",
    )
    s = Server(
        data_dir=root / "data",
        port=free_port(),
        args=["--gpus", "8", "--gpu-type", "H800", "--min-runtime", "0", "--grace", "2"],
        env=env,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def world(server: Server) -> dict:
    """acme and beta fill the 8 GPUs with long jobs, each has a job waiting, and a job
    of each has already finished."""
    tokens = {}
    with server.client() as op:
        for name, quota in (("acme", QuotaSpec(guaranteed=4)), ("beta", QuotaSpec(guaranteed=4))):
            created = op.create_tenant(name, {"H800": quota})
            tokens[name] = created.token
    jobs: dict[str, int] = {}
    for tenant, prefix in (("acme", "acme"), ("beta", SECRET)):
        with Client(server.url, tokens[tenant], timeout=10) as c:
            done = c.submit(JobSpec(name=f"{prefix}-quick", gpus=1, command=["true"]))
            wait_for(
                lambda c=c, done=done: c.get_job(done.id).state.value == "succeeded",
                timeout=60,
                what=f"{prefix}-quick to succeed",
            )
            jobs[f"{tenant}-quick"] = done.id
            long = c.submit(
                JobSpec(
                    name=f"{prefix}-train",
                    gpus=4,
                    command=["/bin/sh", "-c", "echo training on $CUDA_VISIBLE_DEVICES; sleep 600"],
                )
            )
            jobs[f"{tenant}-train"] = long.id
    for tenant, prefix in (("acme", "acme"), ("beta", SECRET)):
        with Client(server.url, tokens[tenant], timeout=10) as c:
            wait_for(
                lambda c=c, i=jobs[f"{tenant}-train"]: c.get_job(i).state.value == "running",
                timeout=60,
                what=f"{prefix}-train to run",
            )
            jobs[f"{tenant}-wait"] = c.submit(
                JobSpec(name=f"{prefix}-wait", gpus=2, command=["sleep", "1"])
            ).id
    return {"tokens": tokens, "jobs": jobs}


@pytest.fixture(scope="module")
def chromium():  # type: ignore[no-untyped-def]
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page_for(chromium, server: Server):  # type: ignore[no-untyped-def]
    """A new browser context per call, signed in with the given token (or not at all);
    every page error fails the test."""
    contexts = []
    errors: list[str] = []

    def open_page(token: str | None):  # type: ignore[no-untyped-def]
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(20_000)
        if token is not None:
            page.goto(f"{server.url}/ui/signin")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/ui/")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page's scripts: {errors}"


def drawn(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => window.mosuChartsDrawn !== undefined")


def test_sign_in_and_sign_out(page_for, server: Server):
    page = page_for(None)
    page.goto(f"{server.url}/")
    page.wait_for_url(f"{server.url}/ui/signin")
    page.fill("#token", "mosu_op_wrong")
    page.click("button[type=submit]")
    assert "unknown token" in page.inner_text(".error")
    page.fill("#token", OPERATOR_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/")
    assert page.inner_text("h1") == "Overview"
    assert page.inner_text(".who .badge") == "operator"
    cookie = next(c for c in page.context.cookies() if c["name"] == "mosu_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("mosu_session") == -1
    page.click("text=Sign out")
    page.wait_for_url(f"{server.url}/ui/signin")
    page.goto(f"{server.url}/ui/jobs")
    page.wait_for_url(f"{server.url}/ui/signin")


OPERATOR_PAGES = {
    "overview": ("/ui/", "Overview"),
    "tenants": ("/ui/tenants", "Tenants"),
    "tenant": ("/ui/tenants/acme", "acme"),
    "queue": ("/ui/queue", "Queue"),
    "jobs": ("/ui/jobs", "Jobs"),
    "nodes": ("/ui/nodes", "Nodes"),
    "usage": ("/ui/usage", "Usage"),
}


def test_every_page_renders_with_seeded_data(page_for, server: Server, world, tmp_path: Path):
    page = page_for(OPERATOR_TOKEN)
    for name, (path, heading) in OPERATOR_PAGES.items():
        page.goto(f"{server.url}{path}")
        drawn(page)
        assert page.inner_text("h1").startswith(heading), name
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    page.goto(f"{server.url}/ui/")
    drawn(page)
    assert page.locator(".chart .u-over").count() == 3  # the three charts are drawn
    page.goto(f"{server.url}/ui/queue")
    assert page.locator("table.queue tbody tr").count() == 2
    page.locator("details.why summary").first.click()
    page.wait_for_function(
        "() => document.querySelector('details.why .why-body').innerText.includes('Job')"
    )
    page.goto(f"{server.url}/ui/nodes")
    drawn(page)
    filled = page.evaluate(
        """() => { const c = document.querySelector('canvas.heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3]) n++; return n; }"""
    )
    assert filled > 0
    job = world["jobs"]["acme-train"]
    page.goto(f"{server.url}/ui/jobs/{job}")
    page.wait_for_function(
        "() => document.querySelector('pre.log-tail').innerText.includes('training on')"
    )
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    assert len(list(tmp_path.glob("*.png"))) == len(OPERATOR_PAGES) + 1


def test_docs_work_offline_from_the_package(page_for, server: Server, tmp_path: Path):
    page = page_for(None)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "mosu" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/jobs"]')
    assert requested and all(u.startswith(server.url) for u in requested), requested
    page.screenshot(path=str(tmp_path / "docs.png"))


def test_a_tenants_pages_and_requests_never_contain_another_tenants_jobs(
    page_for, server: Server, world
):
    page = page_for(world["tokens"]["acme"])
    bodies: list[tuple[str, bytes]] = []

    def keep(response) -> None:  # type: ignore[no-untyped-def]
        if "/events/stream" not in response.url:
            bodies.append((response.url, response.body()))

    page.on("response", keep)
    paths = ["/ui/", "/ui/queue", "/ui/jobs", "/ui/usage", "/ui/tenants/acme"]
    paths += [f"/ui/jobs/{world['jobs'][k]}" for k in ("acme-train", "acme-quick", "acme-wait")]
    for path in paths:
        page.goto(f"{server.url}{path}")
        drawn(page)
        assert SECRET not in page.content(), path
        assert "beta" not in page.inner_text("body"), path
    page.wait_for_timeout(1500)  # log tails and refreshes keep requesting
    assert len(bodies) > len(paths)
    leaked = [url for url, body in bodies if SECRET.encode() in body or b"beta" in body]
    assert not leaked, leaked
    # The live stream follows the API's visibility too: beta's new job is not in it.
    with Client(server.url, world["tokens"]["beta"], timeout=10) as beta:
        theirs = _stream_while(
            page, lambda: beta.submit(JobSpec(name=f"{SECRET}-late", gpus=1, command=["true"]))
        )
    with Client(server.url, world["tokens"]["acme"], timeout=10) as acme:
        mine = _stream_while(
            page, lambda: acme.submit(JobSpec(name="acme-late", gpus=1, command=["true"]))
        )
    assert all(SECRET not in e and "beta" not in e for e in theirs), theirs
    assert any('"tenant":"acme"' in e for e in mine), mine


def _stream_while(page, action) -> list[str]:  # type: ignore[no-untyped-def]
    """The events the page's stream delivers while ``action`` runs and 2.5 s after."""
    page.evaluate(
        """() => { window.__got = []; window.__es = new EventSource('/ui/events/stream');
        for (const k of ['state', 'stop-requested'])
          window.__es.addEventListener(k, e => window.__got.push(e.data)); }"""
    )
    page.wait_for_function("() => window.__es.readyState === 1")
    action()
    page.wait_for_timeout(2500)
    return page.evaluate("() => { window.__es.close(); return window.__got; }")


def test_cancel_from_the_dashboard(page_for, server: Server, world):
    page = page_for(world["tokens"]["acme"])
    job = world["jobs"]["acme-train"]
    page.goto(f"{server.url}/ui/jobs/{job}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    page.wait_for_url(f"{server.url}/ui/jobs/{job}")
    # The page follows the job live: stopping, then cancelled, without a reload.
    page.wait_for_selector("h1 .state.cancelled", timeout=30_000)
    with Client(server.url, world["tokens"]["acme"], timeout=10) as c:
        assert c.get_job(job).state.value == "cancelled"


def test_a_form_without_its_csrf_token_is_refused(page_for, server: Server, world):
    page = page_for(world["tokens"]["beta"])
    job = world["jobs"]["beta-train"]
    page.goto(f"{server.url}/ui/jobs/{job}")
    page.evaluate("document.querySelector('form[action$=\"/cancel\"] input[name=csrf]').remove()")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    page.wait_for_selector("text=Refused")
    assert "CSRF" in page.inner_text("main")
    with Client(server.url, world["tokens"]["beta"], timeout=10) as c:
        assert c.get_job(job).state.value == "running"


def test_a_job_state_change_shows_within_two_seconds(page_for, server: Server, world):
    page = page_for(world["tokens"]["beta"])
    job = world["jobs"]["beta-train"]
    page.goto(f"{server.url}/ui/jobs?state=")
    drawn(page)
    row = page.locator("tr", has=page.locator(f'a[href="/ui/jobs/{job}"]'))
    assert row.locator(".state").inner_text() == "running"
    page.wait_for_function("() => document.getElementById('live').classList.contains('on')")
    with Client(server.url, world["tokens"]["beta"], timeout=10) as c:
        c.cancel(job)
        wait_for(
            lambda: c.get_job(job).state.value == "cancelled",
            timeout=30,
            what="the cancelled job to stop",
            every=0.02,
        )
    changed = time.monotonic()
    page.wait_for_function(
        f"""() => {{ const a = document.querySelector('a[href="/ui/jobs/{job}"]');
        return a && a.closest('tr').querySelector('.state').innerText === 'cancelled'; }}""",
        timeout=30_000,
        polling=20,
    )
    shown_after = time.monotonic() - changed
    assert shown_after <= 2.0, f"the page showed the change {shown_after:.2f} s after it happened"


def test_the_page_stream_ends_once_its_session_is_signed_out(server: Server, world):
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as tab:
        tab.get("/ui/signin")
        form = {"token": world["tokens"]["acme"], "csrf": tab.cookies["mosu_signin"]}
        tab.post("/ui/signin", data=form)
        csrf = re.search(r'name="csrf" value="([^"]+)"', tab.get("/ui/").text).group(1)
        received: list[str] = []
        with tab.stream("GET", "/ui/events/stream") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            assert tab.post("/ui/signout", data={"csrf": csrf}).status_code == 303
            time.sleep(2.5)
            with Client(server.url, world["tokens"]["acme"], timeout=10) as acme:
                job = acme.submit(JobSpec(name="acme-after-signout", gpus=1, command=["true"]))
            received = list(lines)  # ends: the stream closes instead of delivering it
    assert not any(f'"job_id":{job.id}' in line for line in received), received
