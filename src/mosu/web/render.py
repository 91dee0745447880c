"""Templates and the words and numbers they show.

``Renderer.page`` renders a whole page, or, for an htmx refresh of the page body
(``HX-Request`` with ``HX-Target: page``), only its ``content`` block: live pages
re-read their numbers without reloading scripts or charts' containers.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from mosu.core.reasons import PendingReason
from mosu.web.charts import tenant_color
from mosu.web.sessions import SignedIn

REASON_WORDS = {
    PendingReason.QUEUED.value: "waiting its turn",
    PendingReason.NO_FIT.value: "no room for it right now",
    PendingReason.NEVER_FITS.value: "can never fit this cluster",
    PendingReason.QUOTA_EXCEEDED.value: "tenant is at its limit",
    PendingReason.WAITING_FOR_GUARANTEE.value: "within guarantee; capacity being reclaimed",
    PendingReason.RESERVED.value: "first in line; capacity held for it",
    PendingReason.BLOCKED_BY_RESERVATION.value: "would delay a reserved job",
    PendingReason.WAITING_FOR_PREEMPTED.value: "waiting for preempted jobs to exit",
    PendingReason.CREDITS_EXHAUSTED.value: "its company's credits are used up",
}
"""A pending reason in words; the code stays visible beside it."""

NAV = (
    ("overview", "", "Overview", False),
    ("tenants", "tenants", "Tenants", True),
    ("queue", "queue", "Queue", False),
    ("jobs", "jobs", "Jobs", False),
    ("nodes", "nodes", "Nodes", True),
    ("usage", "usage", "Usage", False),
    ("whatif", "whatif", "What if", True),
)
"""(key, path, title, operator only). A new page adds a line here and a route."""


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), UTC)


def duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    days, rest = divmod(int(seconds), 86400)
    return f"{days} d {rest // 3600} h" if rest >= 3600 else f"{days} d"


def ago(value: Any, now: float | None = None) -> str:
    at = _as_datetime(value)
    if at is None:
        return "—"
    delta = (time.time() if now is None else now) - at.timestamp()
    return "just now" if abs(delta) < 5 else f"{duration(delta)} ago"


def until(value: Any, now: float | None = None) -> str:
    at = _as_datetime(value)
    if at is None:
        return "unknown"
    delta = at.timestamp() - (time.time() if now is None else now)
    return "now" if delta < 30 else f"in {duration(delta)}"


def utc(value: Any) -> str:
    at = _as_datetime(value)
    return "—" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def gpus(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isclose(value, round(value), abs_tol=1e-9):
        return f"{round(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


class Renderer:
    def __init__(self, prefix: str, *, version: str) -> None:
        self.prefix = prefix
        self.version = version
        self.env = Environment(
            loader=PackageLoader("mosu.web", "templates"),
            autoescape=select_autoescape(("html",), default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            ago=ago,
            until=until,
            utc=utc,
            gpus=gpus,
            percent=percent,
            duration=duration,
            color=tenant_color,
            reason=lambda code: REASON_WORDS.get(code or "", "not scheduled yet"),
        )
        self.env.globals.update(prefix=prefix, version=version, nav=NAV)
        # Compact JSON in pages: the heatmap of a thousand nodes is a quarter smaller.
        self.env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}

    def page(
        self,
        request: Request,
        name: str,
        signed: SignedIn | None,
        *,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        template = self.env.get_template(name)
        context = {"request": request, "me": signed, "now": time.time(), **values}
        partial = request.headers.get("hx-request") and request.headers.get("hx-target") == "page"
        if partial and "content" in template.blocks:
            body = "".join(template.blocks["content"](template.new_context(context)))
        else:
            body = template.render(context)
        return HTMLResponse(body, status_code=status)

    def fragment(self, name: str, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render({"now": time.time(), **values}))
