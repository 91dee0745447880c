"""The credit ledger's business rules: grants, the rate card, balances, statements and
each tenant's out-of-credit policy. A tenant sees only its own; the operator grants and
sets rates. A balance is always the sum of the tenant's ledger entries."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.credits import (
    RESERVED_RESOURCES,
    CreditPolicy,
    from_micro,
    to_micro,
    to_ms,
)
from mosu.core.credits_api import (
    BalanceOut,
    GrantCreate,
    GrantOut,
    RateList,
    RateOut,
    RateSet,
    StatementLine,
    StatementOut,
    StatementTotals,
    TokenRateOut,
)
from mosu.core.credits_tokens import per_million
from mosu.core.errors import InvalidInput, NotFound
from mosu.service.db.credit_rows import (
    CreditEntryRow,
    CreditGrantRow,
    CreditIntervalRow,
    CreditPolicyRow,
    CreditRateRow,
    CreditTokenMinuteRow,
    CreditTokenRateRow,
)
from mosu.service.db.rows import EventRow, TenantRow
from mosu.service.services.auth import Principal
from mosu.service.services.credits_meter import grant_states

RATE_CLOCK_SLACK_S = 5.0
"""A rate may be set this far in the past (clocks of client and server differ); further
back would change what already ran."""


def _epoch(value: datetime | None, default: float) -> float:
    if value is None:
        return default
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant a request may read: a tenant token only its own (others do not exist)."""
    if principal.is_operator:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    return principal.tenant


def _require_tenant(session: Session, name: str) -> None:
    if session.get(TenantRow, name) is None:
        raise NotFound(f"no tenant named {name!r}", field="tenant")


# ------------------------------------------------------------------ grants


def grant(
    session: Session, *, principal: Principal, body: GrantCreate, now: float | None = None
) -> GrantOut:
    principal.require_operator("grant credits")
    _require_tenant(session, body.tenant)
    at = time.time() if now is None else now
    effective = _epoch(body.effective_at, at)
    expires = None if body.expires_at is None else _epoch(body.expires_at, at)
    if expires is not None and expires <= effective:
        raise InvalidInput("a grant must expire after it takes effect", field="expires_at")
    amount = to_micro(body.amount)
    row = CreditGrantRow(
        tenant=body.tenant,
        amount_micro=amount,
        effective_at=effective,
        expires_at=expires,
        priority=body.priority,
        note=body.note,
        created_at=at,
    )
    session.add(row)
    session.flush()
    session.add(
        CreditEntryRow(
            tenant=body.tenant,
            kind="grant",
            amount_micro=amount,
            at=effective,
            grant_id=row.id,
            key=f"grant:{row.id}",
            note=body.note,
        )
    )
    session.add(
        EventRow(
            at=at,
            tenant=body.tenant,
            kind="credits-granted",
            message=f"{body.amount:g} credits" + (f" ({body.note})" if body.note else ""),
        )
    )
    session.flush()
    return _grant_out(row, amount)


def _grant_out(row: CreditGrantRow, remaining: int) -> GrantOut:
    return GrantOut(
        id=row.id,
        tenant=row.tenant,
        amount=from_micro(row.amount_micro),
        amount_micro=row.amount_micro,
        remaining_micro=remaining,
        effective_at=_dt(row.effective_at),
        expires_at=None if row.expires_at is None else _dt(row.expires_at),
        priority=row.priority,
        note=row.note,
    )


# ------------------------------------------------------------------ rates


def set_rates(
    session: Session, *, principal: Principal, body: RateSet, now: float | None = None
) -> RateList:
    principal.require_operator("set rates")
    at = time.time() if now is None else now
    effective = _epoch(body.effective_at, at)
    if effective < at - RATE_CLOCK_SLACK_S:
        raise InvalidInput(
            "a rate takes effect from now or later, never in the past", field="effective_at"
        )
    if not body.rates and not body.tokens:
        raise InvalidInput("name at least one GPU rate or token rate", field="rates")
    seen = set()
    for line in body.rates:
        if line.resource in seen:
            raise InvalidInput(f"{line.resource} is named twice", field="rates")
        seen.add(line.resource)
        if line.resource in RESERVED_RESOURCES and line.borrowed_per_hour is not None:
            raise InvalidInput(f"a borrowed rate is for GPUs, not {line.resource}", field="rates")
        existing = session.scalar(
            select(CreditRateRow).where(
                CreditRateRow.resource == line.resource, CreditRateRow.effective_at == effective
            )
        )
        if existing is None:
            existing = CreditRateRow(resource=line.resource, effective_at=effective, created_at=at)
            session.add(existing)
        existing.micro_per_hour = to_micro(line.per_hour)
        existing.borrowed_micro_per_hour = (
            None if line.borrowed_per_hour is None else to_micro(line.borrowed_per_hour)
        )
    models = [t.model for t in body.tokens]
    for model in models:
        if models.count(model) > 1:
            raise InvalidInput(f"model {model} is named twice", field="tokens")
    for token_line in body.tokens:
        token_row = session.scalar(
            select(CreditTokenRateRow).where(
                CreditTokenRateRow.model == token_line.model,
                CreditTokenRateRow.effective_at == effective,
            )
        )
        if token_row is None:
            token_row = CreditTokenRateRow(
                model=token_line.model, effective_at=effective, created_at=at
            )
            session.add(token_row)
        token_row.prompt_micro_per_m = per_million(token_line.prompt_per_m)
        token_row.completion_micro_per_m = per_million(token_line.completion_per_m)
    text = ", ".join(
        [f"{r.resource}={r.per_hour:g}/h" for r in body.rates]
        + [
            f"{t.model} prompt={t.prompt_per_m:g}/M completion={t.completion_per_m:g}/M"
            for t in body.tokens
        ]
    )
    session.add(EventRow(at=at, kind="rates-changed", message=f"from {_dt(effective)}: {text}"))
    session.flush()
    return list_rates(session)


def list_rates(session: Session) -> RateList:
    rows = session.scalars(
        select(CreditRateRow).order_by(CreditRateRow.resource, CreditRateRow.effective_at)
    )
    return RateList(
        rates=[
            RateOut(
                resource=r.resource,
                per_hour=from_micro(r.micro_per_hour),
                borrowed_per_hour=None
                if r.borrowed_micro_per_hour is None
                else from_micro(r.borrowed_micro_per_hour),
                effective_at=_dt(r.effective_at),
            )
            for r in rows
        ],
        tokens=[
            TokenRateOut(
                model=t.model,
                prompt_per_m=from_micro(t.prompt_micro_per_m),
                completion_per_m=from_micro(t.completion_micro_per_m),
                effective_at=_dt(t.effective_at),
            )
            for t in session.scalars(
                select(CreditTokenRateRow).order_by(
                    CreditTokenRateRow.model, CreditTokenRateRow.effective_at
                )
            )
        ],
    )


# ------------------------------------------------------------------ policies


def set_policy(session: Session, tenant: str, policy: CreditPolicy) -> None:
    row = session.get(CreditPolicyRow, tenant)
    if row is None:
        session.add(CreditPolicyRow(tenant=tenant, on_exhausted=policy.value))
    else:
        row.on_exhausted = policy.value
    session.flush()


def policies(session: Session) -> dict[str, CreditPolicy]:
    """Each tenant's policy that is not the default (``hold``)."""
    return {
        t: CreditPolicy(p)
        for t, p in session.execute(select(CreditPolicyRow.tenant, CreditPolicyRow.on_exhausted))
    }


# ------------------------------------------------------------------ balances


def balances_micro(session: Session, tenants: list[str] | None = None) -> dict[str, int]:
    query = select(CreditEntryRow.tenant, func.sum(CreditEntryRow.amount_micro)).group_by(
        CreditEntryRow.tenant
    )
    if tenants is not None:
        query = query.where(CreditEntryRow.tenant.in_(tenants))
    return {t: int(s) for t, s in session.execute(query)}


def granted_in_force(session: Session, tenants: list[str], now: float) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for g in session.execute(
        select(CreditGrantRow.tenant, CreditGrantRow.amount_micro).where(
            CreditGrantRow.tenant.in_(tenants),
            CreditGrantRow.effective_at <= now,
            (CreditGrantRow.expires_at.is_(None)) | (CreditGrantRow.expires_at > now),
        )
    ):
        out[g.tenant] += g.amount_micro
    return out


def balances(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None = None,
    reserved: dict[str, int] | None = None,
    now: float | None = None,
) -> list[BalanceOut]:
    scope = _scope(principal, tenant)
    if scope is not None:
        _require_tenant(session, scope)
        names = [scope]
    else:
        names = list(session.scalars(select(TenantRow.name).order_by(TenantRow.name)))
    at = time.time() if now is None else now
    sums = balances_micro(session, names)
    granted = granted_in_force(session, names, at)
    states = grant_states(session, names)
    chosen = policies(session)
    rows = {
        g.id: g
        for g in session.scalars(select(CreditGrantRow).where(CreditGrantRow.tenant.in_(names)))
    }
    out = []
    for name in names:
        balance = sums.get(name, 0)
        has_grants = bool(states.get(name))
        out.append(
            BalanceOut(
                tenant=name,
                balance=from_micro(balance),
                balance_micro=balance,
                granted=from_micro(granted.get(name, 0)),
                granted_micro=granted.get(name, 0),
                reserved_micro=(reserved or {}).get(name, 0),
                on_credits_exhausted=chosen.get(name, CreditPolicy.HOLD),
                exhausted=has_grants and balance <= 0,
                grants=[
                    _grant_out(rows[s.id], s.remaining_micro)
                    for s in sorted(states.get(name, []), key=lambda s: s.id)
                ],
            )
        )
    return out


# ------------------------------------------------------------------ statements


def _month_bounds(month: str | None) -> tuple[float, float] | None:
    if month is None:
        return None
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{month!r} is not a month like 2026-12", field="month") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.timestamp(), end.timestamp()


def statement(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None = None,
    month: str | None = None,
) -> StatementOut:
    """Charges per tenant, GPU type and guaranteed/borrowed (by when the usage ended),
    token charges per tenant and model (by the minute of the usage), then grants,
    refunds, expiries and adjustments, with totals."""
    scope = _scope(principal, tenant)
    bounds = _month_bounds(month)
    charges = select(
        CreditIntervalRow.tenant,
        CreditIntervalRow.gpu_type,
        CreditIntervalRow.borrowed,
        func.sum(
            (CreditIntervalRow.end_ms - CreditIntervalRow.start_ms) * CreditIntervalRow.gpu_milli
        ),
        func.sum(CreditIntervalRow.amount_micro),
    ).group_by(CreditIntervalRow.tenant, CreditIntervalRow.gpu_type, CreditIntervalRow.borrowed)
    others = select(
        CreditEntryRow.tenant,
        CreditEntryRow.kind,
        CreditEntryRow.amount_micro,
        CreditEntryRow.note,
    ).where(CreditEntryRow.kind != "charge")
    tokens = select(
        CreditTokenMinuteRow.tenant,
        CreditTokenMinuteRow.model,
        func.sum(CreditTokenMinuteRow.prompt_tokens),
        func.sum(CreditTokenMinuteRow.completion_tokens),
        func.sum(CreditTokenMinuteRow.amount_micro),
    ).group_by(CreditTokenMinuteRow.tenant, CreditTokenMinuteRow.model)
    if scope is not None:
        charges = charges.where(CreditIntervalRow.tenant == scope)
        others = others.where(CreditEntryRow.tenant == scope)
        tokens = tokens.where(CreditTokenMinuteRow.tenant == scope)
    if bounds is not None:
        lo, hi = to_ms(bounds[0]), to_ms(bounds[1])
        charges = charges.where(CreditIntervalRow.end_ms > lo, CreditIntervalRow.end_ms <= hi)
        tokens = tokens.where(
            CreditTokenMinuteRow.minute >= int(bounds[0] // 60),
            CreditTokenMinuteRow.minute < int(bounds[1] // 60),
        )
        others = others.where(CreditEntryRow.at >= bounds[0], CreditEntryRow.at < bounds[1])
    lines: list[StatementLine] = []
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for t, gpu_type, borrowed, milli_ms, amount in session.execute(
        charges.order_by(CreditIntervalRow.tenant, CreditIntervalRow.gpu_type)
    ):
        gpu_hours = int(milli_ms or 0) / 1000 / 3_600_000
        micro = -int(amount or 0)
        lines.append(
            StatementLine(
                tenant=t,
                kind="charge",
                gpu_type=gpu_type,
                borrowed=bool(borrowed),
                gpu_hours=round(gpu_hours, 6),
                amount=from_micro(micro),
                amount_micro=micro,
            )
        )
        totals[t]["charge"] += micro
        totals[t]["gpu_hours"] += gpu_hours
    for t, model, prompt, completion, amount in session.execute(
        tokens.order_by(CreditTokenMinuteRow.tenant, CreditTokenMinuteRow.model)
    ):
        micro = int(amount or 0)
        if micro == 0 and not (prompt or completion):
            continue
        lines.append(
            StatementLine(
                tenant=t,
                kind="tokens",
                model=model,
                prompt_tokens=int(prompt or 0),
                completion_tokens=int(completion or 0),
                amount=from_micro(-micro),
                amount_micro=-micro,
            )
        )
        totals[t]["charge"] += -micro
    grouped: dict[tuple[str, str, str], int] = defaultdict(int)
    for t, kind, amount, note in session.execute(others.order_by(CreditEntryRow.id)):
        grouped[(t, kind, note if kind == "grant" else "")] += amount
        totals[t][kind] += amount
    for (t, kind, note), amount in sorted(grouped.items()):
        lines.append(
            StatementLine(
                tenant=t, kind=kind, amount=from_micro(amount), amount_micro=amount, note=note
            )
        )
    lines.sort(key=lambda line: (line.tenant, line.kind != "grant", line.kind, line.model or ""))
    out_totals = []
    for t in sorted(totals):
        v = totals[t]
        net = int(v["grant"] + v["charge"] + v["refund"] + v["expiry"] + v["adjustment"])
        out_totals.append(
            StatementTotals(
                tenant=t,
                granted_micro=int(v["grant"]),
                charged_micro=-int(v["charge"]),
                refunded_micro=int(v["refund"]),
                expired_micro=-int(v["expiry"]),
                net_micro=net,
                gpu_hours=round(v["gpu_hours"], 6),
            )
        )
    return StatementOut(month=month, lines=lines, totals=out_totals)
