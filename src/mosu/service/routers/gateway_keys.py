"""``/v1/keys``: gateway API keys (model-scoped, rate-limited) and the tokens they used."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from mosu.core.api import MAX_JOB_ID, NAME_PATTERN
from mosu.core.service_api import KeyCreate, KeyList, KeyOut, TokenUsageList
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import gateway_keys

router = APIRouter(prefix="/v1/keys", tags=["keys"])
TenantParam = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, max_length=64, description="The tenant (operator only)."),
]


@router.post("", status_code=201, responses=errors(403, 404))
def create_key(
    body: KeyCreate, platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> KeyOut:
    """A gateway key for the named models; the key is in the answer, and only there."""
    with platform.tx() as s:
        return gateway_keys.create_key(s, principal=who, body=body, tenant=tenant)


@router.get("", responses=errors(404))
def list_keys(platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None) -> KeyList:
    """The caller's keys (the operator: all, or one tenant's); never the keys themselves."""
    with platform.tx() as s:
        return KeyList(keys=gateway_keys.list_keys(s, principal=who, tenant=tenant))


@router.get("/usage", responses=errors(404))
def key_usage(
    platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> TokenUsageList:
    """Requests and tokens metered per key and model: a tenant's keys' use and its
    models' use."""
    with platform.tx() as s:
        return TokenUsageList(usage=gateway_keys.token_usage(s, principal=who, tenant=tenant))


@router.post("/{key_id}/revoke", responses=errors(404))
def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_JOB_ID)], platform: PlatformDep, who: PrincipalDep
) -> KeyOut:
    """Refused by the gateway within its refresh interval (under a second)."""
    with platform.tx() as s:
        return gateway_keys.revoke_key(s, principal=who, key_id=key_id)
