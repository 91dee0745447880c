"""``/v1/services``: model services (replicas behind the gateway) and showcase approval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from mosu.core.api import NAME_PATTERN
from mosu.core.service_api import (
    ServiceList,
    ServiceOut,
    ServiceScale,
    ServiceSpec,
    ShowcaseApproval,
)
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import model_services

router = APIRouter(prefix="/v1/services", tags=["services"])
ServiceName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
TenantParam = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, max_length=64, description="The tenant (operator only)."),
]


@router.post("", status_code=201, responses=errors(404, 409))
def create_service(
    body: ServiceSpec, platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> ServiceOut:
    """Serve a model: its replicas are submitted as jobs and join the gateway when ready."""
    with platform.tx() as s:
        out = model_services.create(
            s, principal=who, spec=body, tenant=tenant, catalog=platform.catalog
        )
    return out


@router.get("", responses=errors(404))
def list_services(
    platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> ServiceList:
    """The caller's services (the operator: every tenant's, or one tenant's)."""
    with platform.tx() as s:
        return ServiceList(services=model_services.list_services(s, principal=who, tenant=tenant))


@router.get("/{name}", responses=errors(404))
def show_service(
    name: ServiceName, platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> ServiceOut:
    with platform.tx() as s:
        return model_services.show(s, principal=who, name=name, tenant=tenant)


@router.post("/{name}/scale", responses=errors(404))
def scale_service(
    name: ServiceName,
    body: ServiceScale,
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: TenantParam = None,
) -> ServiceOut:
    """Change the replica bounds, or the replicas wanted now."""
    with platform.tx() as s:
        return model_services.scale(s, principal=who, name=name, body=body, tenant=tenant)


@router.delete("/{name}", status_code=204, responses=errors(404))
def delete_service(
    name: ServiceName, platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> Response:
    """Stop serving the model; its replicas drain and stop."""
    with platform.tx() as s:
        model_services.delete(s, principal=who, name=name, tenant=tenant)
    return Response(status_code=204)


@router.put("/{name}/showcase", responses=errors(403, 404, 409))
def set_showcase(
    name: ServiceName,
    body: ShowcaseApproval,
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: TenantParam = None,
) -> ServiceOut:
    """Operator: show a public service on the showcase (approved), or take it off at once."""
    with platform.tx() as s:
        return model_services.set_approved(
            s, principal=who, name=name, approved=body.approved, tenant=tenant
        )
