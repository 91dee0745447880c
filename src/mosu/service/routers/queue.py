from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

import mosu
from mosu.core.api import MAX_EVENT_ID, NAME_PATTERN, EventList, Health, QueueOut, UsageOut
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import jobs, queue, usage

router = APIRouter(tags=["queue"])


@router.get("/v1/health")
async def health(platform: PlatformDep) -> Health:
    role = platform.scheduler.role
    return Health(status="ok", version=getattr(mosu, "__version__", "0"), scheduler=role)


@router.get("/v1/queue")
def get_queue(platform: PlatformDep, who: PrincipalDep) -> QueueOut:
    with platform.tx() as s:
        return QueueOut(
            entries=queue.queue(s, principal=who, positions=platform.scheduler.queue_positions)
        )


@router.get("/v1/usage", responses=errors(404))
def get_usage(
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
) -> UsageOut:
    with platform.tx() as s:
        return UsageOut(records=usage.usage(s, principal=who, tenant=tenant))


@router.get("/v1/events")
def get_events(
    platform: PlatformDep,
    who: PrincipalDep,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> EventList:
    with platform.tx() as s:
        return EventList(events=jobs.events(s, principal=who, after_id=after, limit=limit))
