"""``GET /v1/events/stream``: the event history as Server-Sent Events.

Each event is ``id: <resume point>``, ``event: <kind>``, ``data: <EventOut JSON>``. A
reader resumes with the ``Last-Event-ID`` header (browsers send it on reconnect) or
``?after=``; without either the stream starts at the current end (``after=0`` replays
the whole history). A tenant token sees its own jobs' events only. ``limit`` and
``wait_s`` end the stream after that many events or that long without one (scripts,
tests); without them it runs until the client goes away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from mosu.core.api import MAX_EVENT_ID, NAME_PATTERN
from mosu.core.errors import InvalidInput, NotFound
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.platform import Platform
from mosu.service.services.auth import Principal
from mosu.service.services.events import EventCursor, last_event_id

router = APIRouter(tags=["events"])
POLL_S = 0.2
"""How often an open stream looks for new events (the store is shared by servers, so
it is read, not notified)."""
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
SSE_EVENT = {
    "type": "object",
    "description": "One event of the stream (OpenAPI 3.1: the schema of each event).",
    "required": ["data", "event"],
    "properties": {
        "data": {
            "type": "string",
            "description": "The event as JSON: an EventOut",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/EventOut"},
        },
        "event": {"type": "string", "description": "The event's kind"},
        "id": {"type": "string", "description": "Where to resume from (Last-Event-ID)"},
        "retry": {"type": "integer"},
    },
}


@router.get(
    "/v1/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}, **errors(404)},
)
async def stream_events(
    request: Request,
    platform: PlatformDep,
    who: PrincipalDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    wait_s: Annotated[float | None, Query(gt=0, le=86_400)] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern="^[0-9]{1,19}$",
            description="Resume after this event id (wins over ``after``); browsers send it.",
        ),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events of the append-only history, resumable."""
    if tenant is not None and not who.is_operator and tenant != who.tenant:
        # As everywhere: another tenant is not found, whether it exists or not.
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    start = after
    if last_event_id is not None:
        start = int(last_event_id)
        if start > MAX_EVENT_ID:
            raise InvalidInput(f"an event id is at most {MAX_EVENT_ID}", field="Last-Event-ID")
    if start is None:
        start = await run_in_threadpool(_end, platform)
    body = _events(request, platform, who, EventCursor(after=start), tenant, limit, wait_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _end(platform: Platform) -> int:
    with platform.sessions() as s:
        return last_event_id(s)


async def _events(
    request: Request,
    platform: Platform,
    who: Principal,
    cursor: EventCursor,
    tenant: str | None,
    limit: int | None,
    wait_s: float | None,
) -> AsyncIterator[str]:
    sent = 0
    mark = cursor.after
    quiet_since = last_write = time.monotonic()
    yield f"retry: 2000\nid: {mark}\n\n"
    while True:
        batch = await run_in_threadpool(_read, platform, who, cursor, tenant)
        now = time.monotonic()
        for event in batch:
            # ``id`` is where to resume: the highest id delivered so far (an event that
            # filled a gap has a lower id of its own, in ``data``).
            mark = max(mark, event.id)
            data = event.model_dump_json()
            yield f"id: {mark}\nevent: {event.kind}\ndata: {data}\n\n"
            sent += 1
            if limit is not None and sent >= limit:
                return
        if batch:
            quiet_since = last_write = now
        elif wait_s is not None and now - quiet_since >= wait_s:
            return
        if now - last_write >= KEEPALIVE_S:
            last_write = now
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)


def _read(platform: Platform, who: Principal, cursor: EventCursor, tenant: str | None) -> list:
    with platform.sessions() as s:
        return cursor.read(s, principal=who, tenant=tenant)
