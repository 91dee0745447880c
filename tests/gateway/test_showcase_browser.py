"""The public showcase in a real browser (Debian's Chromium, driven by Playwright) against
``mosu up``'s gateway: only operator-approved public models are listed, with the company,
description and live status; the try-it chat streams an answer through the showcase key;
a withdrawn model leaves at once; the traffic is kept as an audit record."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from mosu.client.services import ServicesApi
from mosu.core.service_api import KeyCreate
from mosu.gateway.showcase import MAX_ANSWER_TOKENS
from tests.e2e.conftest import wait_for
from tests.gateway.conftest import Platform, mock_service

pytestmark = pytest.mark.timeout(240)
CHROMIUM = os.environ.get("MOSU_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = os.environ.get("MOSU_SHOWCASE_SCREENSHOT")
"""Also save the page's screenshot here (the docs' image is made this way)."""


def test_showcase_lists_approved_models_and_streams_a_chat(
    platform: Platform, tmp_path: Path
) -> None:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    description = "Answers questions about GPU scheduling, briefly."
    with platform.client("acme") as c:
        api = ServicesApi(c)
        api.create(
            mock_service(
                "guide",
                "acme-guide",
                "--itl",
                "0.03",
                public=True,
                description=description,
                audit_prompts=True,
            )
        )
        api.create(mock_service("draft", "acme-draft", public=True, replicas={"min": 0, "max": 1}))
    with platform.client("beta") as c:
        ServicesApi(c).create(mock_service("secret", "beta-secret", replicas={"min": 0, "max": 1}))
    with platform.client() as op:
        ops = ServicesApi(op)
        ops.approve("guide", True, tenant="acme")
        ops.create_key(KeyCreate(models=["*"], rpm=30, tpm=5000, showcase=True))
    platform.wait_ready("acme", "guide", 1)
    showcase = f"http://127.0.0.1:{platform.gateway_port}/showcase"
    wait_for(lambda: "live" in httpx.get(showcase + "/models.json").text, timeout=10, what="listed")

    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1000, "height": 640}).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(showcase)
            cards = page.locator("[data-model]")
            # Only the approved public model: not the unapproved one, not beta's private one.
            assert cards.count() == 1
            card = page.locator('[data-model="acme-guide"]')
            assert "acme" in card.locator(".company").inner_text()
            assert card.locator(".description").inner_text() == description
            assert "live" in card.locator("[data-status]").inner_text()
            card.locator("input[name=message]").fill("what does mosu do")
            card.locator("button[type=submit]").click()
            answer = card.locator(".answer")
            # Streamed: text appears before the answer is complete, then all of it.
            page.wait_for_function(
                "() => { const a = document.querySelector('.answer');"
                " return a && a.textContent.length > 0 && !a.dataset.done; }"
            )
            page.wait_for_selector(".answer[data-done='1']")
            assert len(answer.inner_text().split()) == MAX_ANSWER_TOKENS
            shot = tmp_path / "showcase.png"
            page.screenshot(path=str(shot), full_page=True)
            if SCREENSHOT:
                shutil.copyfile(shot, SCREENSHOT)

            with platform.client() as op:
                ServicesApi(op).approve("guide", False, tenant="acme")
            wait_for(
                lambda: httpx.get(showcase + "/models.json").json() == [],
                timeout=5,
                what="the withdrawn model gone",
            )
            page.reload()
            assert page.locator("[data-model]").count() == 0
            assert "No models are on show" in page.inner_text("main")
        finally:
            browser.close()
    assert errors == []
    refused = httpx.post(showcase + "/chat", json={"model": "acme-guide", "message": "hi"})
    assert refused.status_code == 404

    db = platform.server.data_dir / "mosu.db"

    def audit() -> list[tuple]:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "select model, status, request_bytes > 0, response_bytes > 0, prompt "
                "from showcase_audit order by id"
            ).fetchall()

    rows = wait_for(lambda: len(audit()) >= 2 and audit(), timeout=10, what="audit records")
    assert rows[0] == ("acme-guide", 200, 1, 1, "what does mosu do")
    assert rows[1][:2] == ("acme-guide", 404)
