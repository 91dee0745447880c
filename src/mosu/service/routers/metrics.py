"""``GET /metrics``: Prometheus text exposition (operator token required: the numbers
name tenants)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.metrics import family
from mosu.service.openapi import errors
from mosu.service.platform import Platform
from mosu.service.services.metrics import store_metrics

router = APIRouter(tags=["metrics"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse, responses=errors(403))
async def metrics(request: Request, platform: PlatformDep, who: PrincipalDep) -> PlainTextResponse:
    """Jobs by state, pending by reason, GPUs allocated, scheduler cycles, API requests."""
    who.require_operator("read metrics")
    text = await run_in_threadpool(_store, platform)
    text += family(
        "mosu_scheduler_leading",
        "gauge",
        "1 while this server's loop schedules (holds the lease, or needs none), else 0.",
        [((), 1 if platform.loop.leading else 0)],
    )
    text += request.app.state.cycle_seconds.render()
    text += request.app.state.api_metrics.render()
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


def _store(platform: Platform) -> str:
    with platform.sessions() as s:
        return store_metrics(s)
