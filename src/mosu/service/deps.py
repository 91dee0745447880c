"""FastAPI dependencies: the platform and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mosu.service.platform import Platform
from mosu.service.services.auth import Principal

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A mosu API token: the operator's, or one of a tenant's.",
)
"""Declares the bearer scheme in the OpenAPI document (the Authorize button of /docs); the
header itself is checked by ``TokenCache``, which explains what is wrong with it."""


async def get_platform(request: Request) -> Platform:
    # ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in the
    # thread pool, a thread hop per request for a dictionary lookup.
    return request.app.state.platform


async def get_principal(
    request: Request,
    platform: Annotated[Platform, Depends(get_platform)],
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    authorization = request.headers.get("authorization")
    known = platform.tokens.cached(authorization)
    if known is not None:
        return known
    # A token not checked a moment ago is read from the store, off the event loop.
    return await run_in_threadpool(platform.tokens.resolve, platform.sessions, authorization)


PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
