"""``/v1/secrets``: a tenant's named secrets. Values go in and never come out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from mosu.core.api import NAME_PATTERN, EnvName, SecretList, SecretOut, SecretSet
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import secrets

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])
SecretName = Annotated[EnvName, Path(description="Also the environment variable a job gets it in.")]
TenantParam = Annotated[
    str | None,
    Query(
        pattern=NAME_PATTERN,
        max_length=64,
        description="The tenant (operator only; a tenant's token means its own).",
    ),
]


@router.put("/{name}", responses={201: {"model": SecretOut}, **errors(404, 409)})
def set_secret(
    name: SecretName,
    body: SecretSet,
    platform: PlatformDep,
    who: PrincipalDep,
    response: Response,
    tenant: TenantParam = None,
) -> SecretOut:
    """Store or replace a secret (201 when new). Jobs naming it in ``secrets`` get it as
    the environment variable ``name``; the value is never returned."""
    with platform.tx() as s:
        out, created = secrets.set_secret(
            s, principal=who, box=platform.secret_box, tenant=tenant, name=name, value=body.value
        )
    response.status_code = 201 if created else 200
    return out


@router.get("", responses=errors(404))
def list_secrets(
    platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> SecretList:
    """Names and times of secrets; never their values."""
    with platform.tx() as s:
        return SecretList(secrets=secrets.list_secrets(s, principal=who, tenant=tenant))


@router.delete("/{name}", status_code=204, responses=errors(404))
def delete_secret(
    name: SecretName, platform: PlatformDep, who: PrincipalDep, tenant: TenantParam = None
) -> Response:
    """Forget a secret; a job naming it that has not started yet fails when it would."""
    with platform.tx() as s:
        secrets.delete_secret(s, principal=who, tenant=tenant, name=name)
    return Response(status_code=204)
