"""Token charges on the ledger: the gateway's meter with the charging hook, on SQLite and
PostgreSQL. A batch charged twice, a flush that fails after charging, and a minute flushed
in pieces are each charged exactly once, drawn from the grant that expires first."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mosu.core.credits_api import RateSet, TokenRateLine
from mosu.core.errors import InvalidInput
from mosu.gateway.meter import Meter, TokenCharge
from mosu.service.db.credit_rows import CreditEntryRow, CreditGrantRow
from mosu.service.db.gateway_rows import GatewayKeyRow
from mosu.service.db.rows import TenantRow
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.services import credits
from mosu.service.services.auth import OPERATOR, Principal
from mosu.service.services.credits_tokens import charge_tokens

T0 = 1_800_000_000.0  # a minute boundary (30,000,000 minutes)
MINUTE = int(T0 // 60)


def charge_at_t0(s, batch) -> None:
    """The gateway's hook with the clock at the usage (the grants are in the future)."""
    charge_tokens(s, batch, now=T0 + 30)


@pytest.fixture
def sessions(db_url: str):
    engine = make_engine(db_url)
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as s:
        for name in ("owner", "caller"):
            s.add(TenantRow(name=name, weight=1.0, created_at=T0 - 100))
        s.flush()
        s.add(
            GatewayKeyRow(
                id=1, tenant="caller", name="k", hash="h" * 64, prefix="mosu_gw", models=[],
                created_at=T0 - 100,
            )
        )  # fmt: skip
        # Two grants: the one that expires first is drawn first.
        for gid, amount, expires in ((1, 10**9, None), (2, 5, T0 + 86_400)):
            s.add(
                CreditGrantRow(
                    id=gid, tenant="owner", amount_micro=amount, effective_at=T0 - 100,
                    expires_at=expires, priority=0, note="", created_at=T0 - 100,
                )
            )  # fmt: skip
            s.add(
                CreditEntryRow(
                    tenant="owner", kind="grant", amount_micro=amount, at=T0 - 100,
                    grant_id=gid, key=f"grant:{gid}", note="",
                )
            )  # fmt: skip
        credits.set_rates(
            s,
            principal=OPERATOR,
            body=RateSet(
                tokens=[TokenRateLine(model="tiny", prompt_per_m=0.5, completion_per_m=1.5)]
            ),
            now=T0 - 60,
        )
    yield factory
    engine.dispose()


def _balance(factory) -> int:
    with factory() as s:
        return credits.balances_micro(s, ["owner"])["owner"]


def _charges(factory) -> list[tuple[int | None, int, str]]:
    with factory() as s:
        return [
            (e.grant_id, e.amount_micro, e.note)
            for e in s.scalars(
                select(CreditEntryRow)
                .where(CreditEntryRow.kind == "charge")
                .order_by(CreditEntryRow.id)
            )
        ]


def test_a_minute_flushed_in_pieces_is_charged_the_floor_of_its_total(sessions) -> None:
    start = _balance(sessions)
    meter = Meter(sessions, on_flush=charge_at_t0)
    for prompt, completion in ((3, 1), (4, 3), (100, 53)):  # totals 107 prompt, 57 completion
        meter.add(
            now=T0 + 5, key_id=1, model="tiny", owner="owner", prompt=prompt, completion=completion
        )
        meter.flush()
    # 107 × 0.5 + 57 × 1.5 = 139 micro-credits (each flush charged only what its totals add)
    assert start - _balance(sessions) == 139
    # The grant expiring first (5 micro-credits) is drawn before the one without expiry.
    charges = _charges(sessions)
    # Flushes charge 3 (3p 1c), 6 (totals 7p 4c: 9.5 → 9) and 130 (139 in all).
    assert charges == [
        (2, -3, "tokens tiny"),
        (2, -2, "tokens tiny"),
        (1, -4, "tokens tiny"),
        (1, -130, "tokens tiny"),
    ]
    with sessions() as s:
        out = credits.statement(s, principal=OPERATOR, tenant="owner")
        mine = credits.statement(s, principal=Principal(tenant="caller"))
    lines = [line for line in out.lines if line.kind == "tokens"]
    assert [(x.model, x.prompt_tokens, x.completion_tokens, x.amount_micro) for x in lines] == [
        ("tiny", 107, 57, -139)
    ]
    assert out.totals[0].charged_micro == 139
    assert out.totals[0].net_micro == 10**9 + 5 - 139
    assert not [x for x in mine.lines if x.kind == "tokens"]  # the owner pays, not the caller


def test_a_batch_charged_twice_is_charged_once(sessions) -> None:
    start = _balance(sessions)
    meter = Meter(sessions, on_flush=charge_at_t0)
    meter.add(now=T0 + 61, key_id=1, model="tiny", owner="owner", prompt=1000, completion=1000)
    meter.flush()
    assert start - _balance(sessions) == 2000
    batch = [TokenCharge(MINUTE + 1, 1, "tiny", "owner", 1, 1000, 1000)]
    with sessions.begin() as s:
        assert charge_tokens(s, batch, now=T0 + 62) == 0  # the same totals again
    assert start - _balance(sessions) == 2000
    # The entry key names the minute's totals: a second charge of them cannot be inserted.
    with sessions() as s:
        key = s.scalar(select(CreditEntryRow.key).where(CreditEntryRow.kind == "charge"))
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(CreditEntryRow(tenant="owner", kind="charge", amount_micro=-2000, at=T0, key=key))


def test_a_flush_that_fails_after_charging_leaves_nothing_and_is_charged_once(sessions) -> None:
    start = _balance(sessions)
    fail = [False, True]  # popped from the end: the first flush fails

    def charge_then_crash(s, batch) -> None:
        charge_at_t0(s, batch)
        if fail.pop():
            raise RuntimeError("connection lost before commit")

    meter = Meter(sessions, on_flush=charge_then_crash)
    meter.add(now=T0 + 5, key_id=1, model="tiny", owner="owner", prompt=2000, completion=0)
    meter.flush()  # rolled back: usage and charge together; the batch is kept
    assert _balance(sessions) == start
    meter.flush()
    assert start - _balance(sessions) == 1000
    assert _charges(sessions) == [(2, -5, "tokens tiny"), (1, -995, "tokens tiny")]


def test_token_rates_are_never_retroactive_and_bad_input_names_the_field(sessions) -> None:
    body = RateSet.model_validate(
        {
            "tokens": [{"model": "tiny", "prompt_per_m": 1, "completion_per_m": 1}],
            "effective_at": "2020-01-01T00:00:00Z",
        }
    )
    with pytest.raises(InvalidInput) as past, sessions.begin() as s:
        credits.set_rates(s, principal=OPERATOR, body=body)
    assert past.value.field == "effective_at"
    with pytest.raises(InvalidInput) as twice, sessions.begin() as s:
        line = TokenRateLine(model="tiny", prompt_per_m=1, completion_per_m=1)
        credits.set_rates(s, principal=OPERATOR, body=RateSet(tokens=[line, line]))
    assert twice.value.field == "tokens"
    with pytest.raises(InvalidInput) as empty, sessions.begin() as s:
        credits.set_rates(s, principal=OPERATOR, body=RateSet())
    assert empty.value.field == "rates"
    with sessions() as s:
        card = credits.list_rates(s)
    assert [(t.model, t.prompt_per_m, t.completion_per_m) for t in card.tokens] == [
        ("tiny", 0.5, 1.5)
    ]


def test_token_charges_trigger_the_threshold_alerts(sessions) -> None:
    from mosu.service.services.credits_alerts import check_thresholds

    meter = Meter(sessions, on_flush=charge_at_t0)
    # 80 % of the 10⁹ + 5 micro-credits granted: 1.6 × 10⁹ prompt tokens at 0.5 / M.
    meter.add(now=T0 + 5, key_id=1, model="tiny", owner="owner", prompt=1_600_000_010, completion=0)
    meter.flush()
    with sessions.begin() as s:
        alerts = check_thresholds(s, ["owner"], now=T0 + 40)
    assert [a.threshold_percent for a in alerts] == [80]


def test_the_usage_page_counts_token_charges_in_the_burn_per_day(sessions) -> None:
    from datetime import UTC, datetime

    from mosu.web.credits_panel import credits_panel

    meter = Meter(sessions, on_flush=charge_at_t0)
    meter.add(now=T0 + 5, key_id=1, model="tiny", owner="owner", prompt=2_000_000, completion=0)
    meter.flush()  # 1 credit
    with sessions() as s:
        panel = credits_panel(s, OPERATOR, datetime.fromtimestamp(T0 + 60, UTC))
    assert panel is not None
    (owner,) = [r for r in panel.values["rows"] if r["tenant"] == "owner"]
    assert owner["burned"][-1] == 1.0
