"""FastAPI dependencies: the platform and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from mosu.service.platform import Platform
from mosu.service.services.auth import Principal


async def get_platform(request: Request) -> Platform:
    # ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in the
    # thread pool, a thread hop per request for a dictionary lookup.
    return request.app.state.platform


async def get_principal(
    platform: Annotated[Platform, Depends(get_platform)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    known = platform.tokens.cached(authorization)
    if known is not None:
        return known
    # A token not seen before is looked up in the store, off the event loop.
    return await run_in_threadpool(platform.tokens.resolve, platform.sessions, authorization)


PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
