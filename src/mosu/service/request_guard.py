"""``RequestGuard``: what every write under ``/v1`` must be before a route sees it.

A body larger than ``MAX_BODY_BYTES`` is 413 (refused from its ``Content-Length``, or as
soon as that many bytes arrive); a body that is not JSON is 415, unless the operation
declares its type (``POST /v1/jobs`` reads YAML too); JSON that is malformed, nested deeper
than ``MAX_DEPTH``, has a duplicate key or a NaN is 400. Checked here, in one place, the
framework never parses such a body (100,000 nested arrays used to exhaust the stack).

The parsed JSON is left in ``scope["mosu.json"]`` for a route that reads the raw body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mosu.core.api import MAX_BODY_BYTES
from mosu.core.errors import (
    MalformedInput,
    PlatformError,
    TooLarge,
    UnsupportedMediaType,
)
from mosu.core.jobspec import parse_json
from mosu.service.openapi import OperationIndex

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PARSED_JSON = "mosu.json"


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error: ``{"error": {"code", "message", "field"}}``."""
    body = {"error": {"code": code, "message": message, "field": field}}
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(status_code=status, content=body, headers=headers or None)


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def media_type_of(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


class RequestGuard:
    def __init__(self, app: ASGIApp, *, operations: Callable[[], OperationIndex]) -> None:
        self.app = app
        self._operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            if body:
                self._check(scope, body)
        except PlatformError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.field)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise TooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise TooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _check(self, scope: Scope, body: bytes) -> None:
        media = media_type_of(Headers(scope=scope))
        if is_json(media):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedInput("request body is not UTF-8 text") from None
            scope[PARSED_JSON] = parse_json(text, source="request body")
            return
        if media and media in self._declared_for(scope):
            return
        accepted = ", ".join(["application/json", *sorted(self._declared_for(scope))])
        shown = media or "none"
        raise UnsupportedMediaType(
            f"a request body must be {accepted}; got Content-Type {shown}",
            field="Content-Type",
        )

    def _declared_for(self, scope: Scope) -> frozenset[str]:
        declared = self._operations().body_types(scope["method"], scope["path"])
        return frozenset(t for t in declared if not is_json(t))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def parsed_json(scope: dict[str, Any]) -> Any:
    """The body ``RequestGuard`` parsed, if it was JSON."""
    return scope.get(PARSED_JSON)
