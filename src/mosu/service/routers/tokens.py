"""``/v1/tokens``: named API tokens with an expiry; list, revoke, rotate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from mosu.core.api import NAME_PATTERN, TokenCreate, TokenInfo, TokenList, TokenOut
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import auth

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("", status_code=201, responses=errors(404, 409))
def create_token(body: TokenCreate, platform: PlatformDep, who: PrincipalDep) -> TokenOut:
    """A new token, shown once. A tenant's token creates tokens of its tenant; the
    operator names the tenant, or creates an operator token."""
    with platform.tx() as s:
        return auth.create_token(s, principal=who, body=body, now=platform.tokens.now())


@router.get("", responses=errors(404))
def list_tokens(
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
    all_: Annotated[bool, Query(alias="all")] = False,
) -> TokenList:
    """Live tokens (with ``all``, revoked and expired ones too); never their values."""
    with platform.tx() as s:
        found = auth.list_tokens(
            s, principal=who, tenant=tenant, include_dead=all_, now=platform.tokens.now()
        )
    return TokenList(tokens=found)


@router.post("/rotate", status_code=201, responses=errors(404))
def rotate_token(platform: PlatformDep, who: PrincipalDep) -> TokenOut:
    """Replace the token of this request with a new one (same name, owner and lifetime);
    the old one stops working at once."""
    with platform.tx() as s:
        out = auth.rotate_token(s, principal=who, now=platform.tokens.now())
    if who.token_id is not None:
        platform.tokens.forget(who.token_id)
    return out


@router.delete("/{token_id}", responses=errors(404))
def revoke_token(token_id: TokenId, platform: PlatformDep, who: PrincipalDep) -> TokenInfo:
    """Revoke a token: refused here at once, and by every server sharing the store within
    a second."""
    with platform.tx() as s:
        out = auth.revoke_token(s, principal=who, token_id=token_id, now=platform.tokens.now())
    platform.tokens.forget(token_id)
    return out
