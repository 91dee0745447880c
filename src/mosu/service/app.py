"""``create_app(platform)``: routers, lifespan and one error mapping for every failure.

Every error leaves as ``{"error": {"code", "message", "field"}}`` with a 4xx status (503
when the store cannot be reached for now): ``PlatformError`` by its own status, request
validation as 422 naming the field, bodies refused by ``RequestGuard`` as 400/413/415,
unknown routes as 404 and a method a path does not have as 405 with ``Allow``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

import mosu
from mosu.core.errors import PlatformError
from mosu.core.jobspec import best_error, error_message, location
from mosu.service import openapi
from mosu.service.metrics import MetricsMiddleware, ProcessMetrics, without_framework_telemetry
from mosu.service.platform import Platform
from mosu.service.request_guard import RequestGuard, error_response
from mosu.service.routers import (
    credits,
    events,
    gateway_keys,
    history,
    jobs,
    metrics,
    model_services,
    nodes,
    queue,
    secrets,
    tenants,
    tokens,
    whatif,
)
from mosu.service.submissions import SubmitWriter

log = logging.getLogger("mosu.api")
HTTP_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}
RETRY_AFTER_S = "1"


def store_unavailable(exc: Exception) -> bool:
    """Whether a store error is the store being out of reach or busy (worth a retry), not
    a fault of the request or of mosu."""
    if isinstance(exc, DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or "database is locked" in str(exc.orig)
    return False


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
        **without_framework_telemetry(),
    )
    app.state.platform = platform
    app.state.submit_writer = writer = SubmitWriter(platform)
    for router in (
        tenants.router,
        nodes.router,
        jobs.router,
        queue.router,
        events.router,
        tokens.router,
        secrets.router,
        credits.router,
        model_services.router,
        gateway_keys.router,
        history.router,
        whatif.router,
    ):
        app.include_router(router)
    app.include_router(metrics.router)
    jobs.match_submissions_first(app)
    operations = openapi.install(app)
    app.add_middleware(RequestGuard, operations=operations)
    app.state.process_metrics = ProcessMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.process_metrics)
    if platform.schedules_here:
        platform.loop.on_cycle = app.state.process_metrics.observe_cycle
        platform.loop.on_phases = app.state.process_metrics.observe_phases
    # The dashboard is the outer layer over these services; it is mounted here so that
    # every server (and every app a test builds) serves it at / and /ui.
    from mosu.web import mount_dashboard

    mount_dashboard(app, platform)

    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        status = exc.status if 400 <= exc.status < 500 or exc.status == 503 else 400
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        return error_response(status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if not errors:
            return error_response(422, "invalid", "invalid request")
        first = best_error(errors)
        loc = tuple(p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        return error_response(422, "invalid", error_message(first), location({"loc": loc}))

    @app.exception_handler(StaleDataError)
    async def stale(_request: Request, _exc: StaleDataError) -> JSONResponse:
        return error_response(409, "conflict", "the job changed at the same moment; try again")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Every method of the path (the router names only the first route it tried).
            allowed = operations().methods(request.url.path)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
            return error_response(405, code, message, headers=headers)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(DataError)
    async def data_error(_request: Request, exc: DataError) -> JSONResponse:
        # Input checks should have refused it; the store is the last line. Parameters are
        # hidden by the engine (they may hold a tenant's data), so the log is safe.
        log.warning("the store refused a value: %s", exc.orig.__class__.__name__)
        return error_response(422, "invalid", "a value does not fit the store")

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        if not store_unavailable(exc):
            raise exc  # a fault: the handler below answers 500 and logs it
        log.warning("store unavailable: %s", exc.__class__.__name__)
        return error_response(
            503,
            "unavailable",
            "the store is unavailable for now; try again",
            headers={"Retry-After": RETRY_AFTER_S},
        )

    for kind in (DBAPIError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal", "internal server error; see the server log")

    return app
