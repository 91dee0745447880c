"""FastAPI dependencies: the platform and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from mosu.service.platform import Platform
from mosu.service.services.auth import Principal


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def get_principal(
    platform: Annotated[Platform, Depends(get_platform)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return platform.tokens.resolve(platform.sessions, authorization)


PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
