"""``create_app(platform)``: routers, lifespan and one error mapping for every failure.

Every error leaves as ``{"error": {"code", "message", "field"}}`` with a 4xx
status: ``PlatformError`` by its own status, request validation as 422 naming
the field, unknown routes and methods as 404/405.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

import mosu
from mosu.core.errors import PlatformError
from mosu.core.jobspec import error_message, field_path
from mosu.service.metrics import CYCLE_BUCKETS, ApiMetrics, Histogram, MetricsMiddleware
from mosu.service.platform import Platform
from mosu.service.routers import events, jobs, metrics, nodes, queue, tenants
from mosu.service.submissions import SubmitWriter

log = logging.getLogger("mosu.api")
HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content=body, headers=headers)


def create_app(platform: Platform, *, run_scheduler: bool = False) -> FastAPI:
    """The ASGI app over an opened ``platform``; with ``run_scheduler`` its lifespan
    starts and stops the scheduling loop."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_scheduler:
            platform.start_scheduler()
        try:
            yield
        finally:
            writer.stop()
            if run_scheduler:
                platform.close()

    app = FastAPI(
        title="mosu",
        version=mosu.__version__,
        description="Shared GPU cluster scheduler: tenants, quotas, jobs and the queue.",
        lifespan=lifespan,
        # /docs is served by the dashboard from the package's own Swagger UI (offline).
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.submit_writer = writer = SubmitWriter(platform)
    for router in (tenants.router, nodes.router, jobs.router, queue.router, events.router):
        app.include_router(router)
    app.include_router(metrics.router)
    app.state.api_metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.api_metrics)
    app.state.cycle_seconds = Histogram(
        "mosu_scheduler_cycle_seconds",
        "Time one scheduling cycle took to decide and record its decisions.",
        CYCLE_BUCKETS,
    )
    platform.loop.on_cycle = app.state.cycle_seconds.observe
    # The dashboard is the outer layer over these services; it is mounted here so that
    # every server (and every app a test builds) serves it at / and /ui.
    from mosu.web import mount_dashboard

    mount_dashboard(app, platform)

    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        status = exc.status if 400 <= exc.status < 500 else 400
        return _error(status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        return _error(422, "invalid", error_message(first), field_path(loc) or None)

    @app.exception_handler(StaleDataError)
    async def stale(_request: Request, _exc: StaleDataError) -> JSONResponse:
        return _error(409, "conflict", "the job changed at the same moment; try again")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal", "internal server error; see the server log")

    return app
