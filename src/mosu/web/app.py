"""The dashboard as an ASGI app mounted at ``/ui`` beside the API, and ``/`` and ``/docs``.

``mount_dashboard(app, platform)`` adds to the API's app: ``/`` (to the overview),
``/docs`` (Swagger UI from the package's own copy, so it works offline) and the
dashboard at ``/ui``: server-rendered pages (Jinja2), htmx for partial refreshes,
uPlot for charts, and a page stream that follows the API's event stream. Pages read
and act only through the service functions the API uses, with the principal of the
signed-in session, so a tenant's pages see exactly what its token sees on the API.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mosu
from mosu.core.errors import PlatformError
from mosu.core.jobspec import error_message, field_path
from mosu.service.metrics import without_framework_telemetry
from mosu.service.platform import Platform
from mosu.web import sessions
from mosu.web.history_cache import HistoryCache
from mosu.web.render import Renderer
from mosu.web.sessions import SignedIn

PACKAGE = Path(__file__).parent
STATIC = PACKAGE / "static"
PREFIX = "/ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""Scripts only from the package's own files: a tenant's job name rendered into the
operator's page can never run as script, even if escaping were ever missed."""


class SignInRequired(Exception):
    pass


class Forbidden(Exception):
    """A state-changing request without its CSRF token, or from another origin."""


class Headers:
    """Security headers on every dashboard answer, ``Server-Timing`` (the time until the
    answer started: the page's server time) and long caching of versioned assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, cpu = time.perf_counter(), time.process_time()
        static = scope["path"].startswith(f"{PREFIX}/static/") or scope["path"].startswith(
            "/static/"
        )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                ms = (time.perf_counter() - began) * 1000
                # The process's CPU time too: on a busy machine the wall time is mostly
                # waiting for a core (exact only while requests do not overlap).
                cpu_ms = (time.process_time() - cpu) * 1000
                timing = f"app;dur={ms:.1f}, cpu;dur={cpu_ms:.1f}"
                headers.append((b"server-timing", timing.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"same-origin"))
                if static:
                    headers.append((b"cache-control", b"public, max-age=86400"))
                else:
                    headers.append((b"content-security-policy", CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def mount_dashboard(
    app: FastAPI, platform: Platform, *, history_max_age_s: float | None = None
) -> None:
    """Serve the dashboard at ``/ui``, send ``/`` there, and serve ``/docs`` offline."""
    max_age = (
        platform.settings.dashboard_history_s if history_max_age_s is None else (history_max_age_s)
    )
    ui = create_dashboard(platform, history_max_age_s=max_age)
    app.state.dashboard = ui

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{PREFIX}/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/static/favicon.svg",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # No validator badge: it would send the document to an outside service.
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(PREFIX, ui, name="dashboard")


def create_dashboard(platform: Platform, *, history_max_age_s: float) -> FastAPI:
    ui = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        title="mosu dashboard",
        **without_framework_telemetry(),
    )
    ui.state.platform = platform
    ui.state.history = HistoryCache(platform.sessions, max_age_s=history_max_age_s)
    ui.state.render = Renderer(PREFIX, version=mosu.__version__)
    # zlib's default level: level 9 (Starlette's) costs several times the CPU on a
    # 200 KB page for a few percent fewer bytes.
    ui.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=6)
    ui.add_middleware(Headers)
    ui.mount("/static", StaticFiles(directory=STATIC), name="static")

    @ui.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, _exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/signin"})
        if _wants_json(request):
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "sign in first", "field": None}},
                status_code=401,
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
        response.set_cookie("mosu_next", target, httponly=True, samesite="strict", path=PREFIX)
        return response

    @ui.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return _error_page(request, 403, "Refused", str(exc))

    @ui.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError) -> Response:
        status = exc.status if 400 <= exc.status < 500 else 400
        if _wants_json(request):
            body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
            return JSONResponse(body, status_code=status)
        return _error_page(request, status, exc.code.replace("-", " ").capitalize(), exc.message)

    @ui.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(p for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        field = field_path(loc) or None
        message = error_message(first)
        if _wants_json(request):
            body = {"error": {"code": "invalid", "message": message, "field": field}}
            return JSONResponse(body, status_code=422)
        return _error_page(request, 422, "Invalid request", f"{field}: {message}")

    @ui.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> Response:
        return _error_page(request, 404, "Not found", "There is no such page.")

    from mosu.web import pages, signin, whatif_page

    ui.include_router(signin.router)
    ui.include_router(pages.router)
    ui.include_router(whatif_page.router)
    return ui


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.url.path.endswith(
        (".json", "/log", "/stream")
    )


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    render: Renderer = request.app.state.render
    signed = getattr(request.state, "signed", None)
    return render.page(request, "error.html", signed, status=status, title=title, message=message)


# ---------------------------------------------------------------- dependencies


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def signed_in(request: Request) -> SignedIn:
    platform: Platform = request.app.state.platform
    signed = sessions.resolve(
        platform.sessions, platform.tokens, request.cookies.get(sessions.COOKIE)
    )
    if signed is None:
        raise SignInRequired()
    request.state.signed = signed
    return signed


def checked_form(
    request: Request,
    signed: Annotated[SignedIn, Depends(signed_in)],
    csrf: Annotated[str | None, Form()] = None,
) -> SignedIn:
    """The signed-in principal of a state-changing form, once its CSRF token and origin
    check out."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("This form was sent from another site.")
    given = csrf or request.headers.get("x-csrf-token")
    if not sessions.csrf_ok(signed.csrf, given):
        raise Forbidden("This form has no valid CSRF token. Reload the page and try again.")
    return signed


PlatformDep = Annotated[Platform, Depends(get_platform)]
SignedDep = Annotated[SignedIn, Depends(signed_in)]
FormDep = Annotated[SignedIn, Depends(checked_form)]
