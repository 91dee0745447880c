from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from mosu.core.api import (
    NAME_PATTERN,
    QuotaUpdate,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantQuotasOut,
    TenantUpdate,
    TokenOut,
)
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import tenants

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])
TenantName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64)]


@router.post("", status_code=201, responses=errors(403, 409))
def create_tenant(body: TenantCreate, platform: PlatformDep, who: PrincipalDep) -> TenantCreated:
    with platform.tx() as s:
        created = tenants.create_tenant(s, principal=who, body=body)
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return created


@router.get("")
def list_tenants(platform: PlatformDep, who: PrincipalDep) -> list[TenantOut]:
    with platform.tx() as s:
        return tenants.list_tenants(s, principal=who)


@router.get("/{name}", responses=errors(404))
def get_tenant(name: TenantName, platform: PlatformDep, who: PrincipalDep) -> TenantOut:
    with platform.tx() as s:
        return tenants.get_tenant(s, principal=who, name=name)


@router.patch("/{name}", responses=errors(403, 404))
def update_tenant(
    name: TenantName, body: TenantUpdate, platform: PlatformDep, who: PrincipalDep
) -> TenantOut:
    """Change a tenant's weight or cohort; a field left out is kept, and a ``cohort`` of
    null or ``""`` moves the tenant to the default cohort."""
    with platform.tx() as s:
        out = tenants.update_tenant(s, principal=who, name=name, body=body)
    platform.scheduler.wake()
    return out


@router.put("/{name}/quotas", responses=errors(403, 404))
def update_quotas(
    name: TenantName, body: QuotaUpdate, platform: PlatformDep, who: PrincipalDep
) -> TenantQuotasOut:
    with platform.tx() as s:
        out = tenants.update_quotas(
            s, principal=who, name=name, quotas=body.quotas, weight=body.weight
        )
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return out


@router.post("/{name}/tokens", status_code=201, responses=errors(403, 404))
def new_token(name: TenantName, platform: PlatformDep, who: PrincipalDep) -> TokenOut:
    """Issue another token for a tenant (``POST /v1/tokens`` names it and sets an expiry)."""
    with platform.tx() as s:
        return tenants.new_token(s, principal=who, name=name)
