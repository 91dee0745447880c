"""The Usage page's credits panel: balances and burn per day, each tenant only its own;
credit alerts on the overview."""

from __future__ import annotations

import time

from tests.web.conftest import browser, seed, sign_in, submit


def test_the_credits_panel_shows_balances_and_a_tenant_only_its_own(app, api, platform, executor):
    tokens = seed(api)
    assert "Credits" not in _usage(app, tokens["acme"])  # nothing granted: no panel
    before = browser(app)
    sign_in(before, tokens["acme"])
    assert "credits" not in before.get("/ui/").text
    api.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": 3600 * 100}]})
    for tenant in ("acme", "beta"):
        r = api.post("/v1/credits/grants", json={"tenant": tenant, "amount": 10})
        assert r.status_code == 201, r.text
    job = submit(api, tokens["acme"], "burn", gpus=1, estimate=0.05)
    platform.loop.run_once()
    time.sleep(0.15)  # 100 credits a second: 10 last 0.1 s
    executor.exit(job["id"], 0)
    platform.loop.run_once()
    platform.loop.meter_credits(force=True)
    page = _usage(app, tokens["acme"])
    assert "Credits" in page and "exhausted" in page and "beta" not in page
    overview = browser(app)
    sign_in(overview, tokens["acme"])
    assert "credits" in overview.get("/ui/").text  # the 80 % and 100 % alerts
    operator = _usage(app, None)
    assert "acme" in operator and "beta" in operator


def _usage(app, token: str | None) -> str:
    from tests.service.conftest import OPERATOR_TOKEN

    tab = browser(app)
    sign_in(tab, token or OPERATOR_TOKEN)
    r = tab.get("/ui/usage")
    assert r.status_code == 200, r.text
    return r.text
