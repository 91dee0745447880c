from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mosu.core.api import NAME_PATTERN
from mosu.core.credits_api import (
    BalanceList,
    GrantCreate,
    GrantOut,
    RateList,
    RateSet,
    StatementOut,
)
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import credits

router = APIRouter(tags=["credits"])
MONTH_PATTERN = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"
"""A UTC month from 1970-01 to 2999-12."""
TenantQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)]


@router.post("/v1/credits/grants", status_code=201, responses=errors(403, 404))
def grant(body: GrantCreate, platform: PlatformDep, who: PrincipalDep) -> GrantOut:
    """Grant a tenant credits (operator)."""
    with platform.tx() as s:
        out = credits.grant(s, principal=who, body=body)
    platform.scheduler.wake()
    return out


@router.get("/v1/credits/balances", responses=errors(404))
def balances(platform: PlatformDep, who: PrincipalDep, tenant: TenantQuery = None) -> BalanceList:
    """Balances (the sum of each tenant's ledger), grants and what running jobs reserve."""
    with platform.tx() as s:
        return BalanceList(
            balances=credits.balances(
                s, principal=who, tenant=tenant, reserved=platform.scheduler.credit_reserved
            )
        )


@router.get("/v1/credits/statement", responses=errors(404))
def statement(
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: TenantQuery = None,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN)] = None,
) -> StatementOut:
    with platform.tx() as s:
        return credits.statement(s, principal=who, tenant=tenant, month=month)


@router.get("/v1/rates")
def rates(platform: PlatformDep, who: PrincipalDep) -> RateList:
    """The rate card, every line with the time it takes effect."""
    with platform.tx() as s:
        return credits.list_rates(s)


@router.post("/v1/rates", responses=errors(403))
def set_rates(body: RateSet, platform: PlatformDep, who: PrincipalDep) -> RateList:
    """Set rates from a time on (operator); what ran before keeps the old rates."""
    with platform.tx() as s:
        return credits.set_rates(s, principal=who, body=body)
