"""The ledger through the API: grants, rates, metering, statements, isolation."""

from __future__ import annotations

import time

from sqlalchemy import select

from mosu.core.credits import MICRO
from mosu.service.db.credit_rows import CreditEntryRow, CreditIntervalRow
from mosu.service.db.rows import AllocationRow
from tests.service.conftest import bearer, seed, submit


def _ledger(platform) -> tuple[list[CreditIntervalRow], list[CreditEntryRow]]:
    with platform.sessions() as s:
        return (
            list(s.scalars(select(CreditIntervalRow).order_by(CreditIntervalRow.id))),
            list(s.scalars(select(CreditEntryRow).order_by(CreditEntryRow.id))),
        )


def test_a_run_is_charged_what_it_held_and_the_balance_is_the_sum(api, platform, executor):
    tokens = seed(api)
    r = api.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": 3600}]})
    assert r.status_code == 200, r.text
    r = api.post("/v1/credits/grants", json={"tenant": "a", "amount": 1000, "note": "seed"})
    assert r.status_code == 201, r.text
    job = submit(api, tokens["a"], gpus=2, estimate="1m")
    platform.loop.run_once()
    time.sleep(0.3)
    platform.loop.meter_credits(force=True)  # an interval while it runs
    time.sleep(0.2)
    executor.exit(job["id"], 0)
    platform.loop.run_once()
    intervals, entries = _ledger(platform)
    assert [i.final for i in intervals] == [False, True]
    assert intervals[0].end_ms == intervals[1].start_ms
    with platform.sessions() as s:
        alloc = s.scalars(select(AllocationRow).where(AllocationRow.job_id == job["id"])).one()
    held_ms = round(alloc.released_at * 1000) - round(alloc.allocated_at * 1000)
    # 3600 credits per GPU-hour = 1 credit per GPU-second; 2 GPUs.
    expected = held_ms * 2 * MICRO // 1000
    charged = -sum(e.amount_micro for e in entries if e.kind == "charge")
    assert charged == expected == sum(i.amount_micro for i in intervals)
    balance = api.get("/v1/credits/balances", params={"tenant": "a"}).json()["balances"][0]
    assert balance["balance_micro"] == 1000 * MICRO - expected
    assert balance["granted_micro"] == 1000 * MICRO
    statement = api.get("/v1/credits/statement", params={"tenant": "a"}).json()
    assert statement["totals"][0]["charged_micro"] == expected
    assert statement["totals"][0]["net_micro"] == balance["balance_micro"]
    # A tenant sees only its own.
    mine = api.get("/v1/credits/balances", headers=bearer(tokens["b"])).json()["balances"]
    assert [b["tenant"] for b in mine] == ["b"]
    r = api.get("/v1/credits/balances", params={"tenant": "a"}, headers=bearer(tokens["b"]))
    assert r.status_code == 404
    r = api.get("/v1/credits/statement", headers=bearer(tokens["b"])).json()
    assert r["lines"] == []
    r = api.post(
        "/v1/credits/grants", json={"tenant": "b", "amount": 5}, headers=bearer(tokens["b"])
    )
    assert r.status_code == 403


def test_rates_are_never_retroactive_and_bad_input_names_the_field(api):
    seed(api)
    r = api.post(
        "/v1/rates",
        json={
            "rates": [{"resource": "H800", "per_hour": 1}],
            "effective_at": "2020-01-01T00:00:00Z",
        },
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "effective_at")
    r = api.post("/v1/rates", json={"rates": [{"resource": "H800", "per_hour": -1}]})
    assert r.status_code == 422
    r = api.post("/v1/credits/grants", json={"tenant": "nobody", "amount": 5})
    assert (r.status_code, r.json()["error"]["field"]) == (404, "tenant")
    r = api.post(
        "/v1/credits/grants",
        json={
            "tenant": "a",
            "amount": 5,
            "effective_at": "2027-01-02T00:00:00Z",
            "expires_at": "2027-01-01T00:00:00Z",
        },
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "expires_at")
