"""``GET /metrics``: Prometheus text exposition (operator token required: the numbers
name tenants)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client.core import GaugeMetricFamily, Metric

from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.metrics import CONTENT_TYPE, exposition
from mosu.service.openapi import errors
from mosu.service.platform import Platform
from mosu.service.services.metrics import store_metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses=errors(403))
async def metrics(request: Request, platform: PlatformDep, who: PrincipalDep) -> Response:
    """Jobs by state, pending by reason and by tenant, GPUs allocated, scheduler cycles
    and their phases, API requests."""
    who.require_operator("read metrics")
    families = await run_in_threadpool(_store, platform)
    leading = GaugeMetricFamily(
        "mosu_scheduler_leading",
        "1 while this server's loop schedules (holds the lease, or needs none), else 0.",
        value=1 if platform.scheduler.leading else 0,
    )
    body = exposition(request.app.state.process_metrics, lambda: [*families, leading])
    return Response(body, media_type=CONTENT_TYPE)


def _store(platform: Platform) -> list[Metric]:
    with platform.sessions() as s:
        return list(store_metrics(s))
