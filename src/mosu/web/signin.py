"""Sign in with a token, sign out, and the page stream that follows the event history."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from mosu.core.errors import Unauthorized
from mosu.service.routers import events
from mosu.web import sessions
from mosu.web.app import PREFIX, Forbidden, FormDep, PlatformDep, SignInRequired
from mosu.web.render import Renderer

router = APIRouter()


def _cookie_kwargs(request: Request) -> dict:
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": PREFIX,
    }


@router.get("/signin")
def signin_form(request: Request, error: str | None = None) -> Response:
    render: Renderer = request.app.state.render
    nonce = secrets.token_urlsafe(24)
    response = render.page(request, "signin.html", None, csrf=nonce, error=error)
    response.set_cookie(sessions.SIGNIN_COOKIE, nonce, max_age=3600, **_cookie_kwargs(request))
    return response


@router.post("/signin")
async def signin(
    request: Request,
    platform: PlatformDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    if not sessions.csrf_ok(request.cookies.get(sessions.SIGNIN_COOKIE, ""), csrf):
        raise Forbidden("The sign-in form expired or came from another site. Reload it.")
    try:
        cookie = await run_in_threadpool(_open_session, platform, token)
    except Unauthorized as exc:
        render: Renderer = request.app.state.render
        nonce = secrets.token_urlsafe(24)
        response = render.page(
            request, "signin.html", None, status=401, csrf=nonce, error=exc.message
        )
        response.set_cookie(sessions.SIGNIN_COOKIE, nonce, max_age=3600, **_cookie_kwargs(request))
        return response
    target = request.cookies.get("mosu_next", "")
    if not target.startswith(f"{PREFIX}/") or target.startswith(f"{PREFIX}//"):
        target = f"{PREFIX}/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sessions.COOKIE, cookie, max_age=int(sessions.SESSION_TTL_S), **_cookie_kwargs(request)
    )
    response.delete_cookie(sessions.SIGNIN_COOKIE, path=PREFIX)
    response.delete_cookie("mosu_next", path=PREFIX)
    return response


def _open_session(platform, token: str) -> str:  # type: ignore[no-untyped-def]
    with platform.tx() as s:
        cookie, _ = sessions.sign_in(s, platform.tokens, platform.sessions, token)
    return cookie


@router.post("/signout")
def signout(request: Request, platform: PlatformDep, signed: FormDep) -> Response:
    with platform.tx() as s:
        sessions.sign_out(s, signed.session_id)
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return response


@router.get("/events/stream")
async def stream(request: Request, platform: PlatformDep) -> StreamingResponse:
    """The API's event stream for the signed-in principal: the same endpoint, the same
    visibility, authenticated by the session instead of a bearer header."""
    signed = await run_in_threadpool(
        sessions.resolve, platform.sessions, platform.tokens, request.cookies.get(sessions.COOKIE)
    )
    if signed is None:
        raise SignInRequired()
    response = await events.stream_events(
        request=request,
        platform=platform,
        who=signed.principal,
        after=None,
        tenant=None,
        limit=None,
        wait_s=None,
        last_event_id=request.headers.get("last-event-id"),
    )
    response.body_iterator = _while_signed_in(
        response.body_iterator, platform, request.cookies.get(sessions.COOKIE)
    )
    return response


RECHECK_S = 2.0
"""How often an open stream makes sure its session still exists (signed out, or its
token no longer accepted: the stream ends before its next event)."""


async def _while_signed_in(chunks, platform, cookie: str | None):  # type: ignore[no-untyped-def]
    checked = time.monotonic()
    async for chunk in chunks:
        if time.monotonic() - checked >= RECHECK_S:
            signed = await run_in_threadpool(
                sessions.resolve, platform.sessions, platform.tokens, cookie
            )
            if signed is None:
                return
            checked = time.monotonic()
        yield chunk
