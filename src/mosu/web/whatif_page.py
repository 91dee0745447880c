"""The What-if page (operator): the inputs of ``mosu whatif`` as a form, and each task's
progress, before → after table, fidelity line and plot of waits per tenant.

A task is ``POST /v1/whatif``'s: the same checks (``services.whatif.plan``), the same
bounded background runner (``platform.whatif``)."""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from mosu.core.credits_api import RateLine
from mosu.core.errors import InvalidInput, NotFound
from mosu.core.history_api import WhatIfRequest
from mosu.service.services import whatif
from mosu.sim.whatif import COLUMNS, columns, comparison_rows, fidelity_line, pair
from mosu.web.app import PREFIX, FormDep, PlatformDep, SignedDep
from mosu.web.render import Renderer

router = APIRouter()
TaskId = Annotated[str, Path(pattern="^[0-9a-f]{16}$")]
WINDOWS = {"1d": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0, "all": None}
LIST_FIELDS = ("set_guarantee", "set_limit", "set_weight", "cohort", "add_nodes", "remove_node")
Text = Annotated[str, Form(max_length=2000)]


def _render(request: Request) -> Renderer:
    return request.app.state.render


def _items(text: str) -> list[str]:
    """A field's changes: separated by commas, semicolons or whitespace."""
    return [x for x in re.split(r"[\s,;]+", text) if x]


def _rates(text: str) -> list[RateLine]:
    """``TYPE=PER_HOUR`` items (``*`` for any other GPU type, ``cpu``, ``mem``)."""
    lines = []
    for item in _items(text):
        resource, sep, amount = item.partition("=")
        try:
            if not sep or not resource:
                raise ValueError
            lines.append(RateLine(resource=resource, per_hour=float(amount)))
        except ValueError:
            raise InvalidInput(
                f"bad {item!r}: expected TYPE=CREDITS_PER_HOUR such as H800=3", field="rates"
            ) from None
    return lines


def _page(request, platform, signed, *, status=200, error=None, values=None):  # type: ignore[no-untyped-def]
    signed.principal.require_operator("run what-if replays")
    return _render(request).page(
        request,
        "whatif.html",
        signed,
        status=status,
        active="whatif",
        tasks=[whatif.task_out(t) for t in platform.whatif.list()],
        profiles=whatif.profile_names(),
        placements=whatif.placement_names(),
        windows=list(WINDOWS),
        error=error,
        values=values or {"window": "30d"},
    )


@router.get("/whatif")
def whatif_page(request: Request, platform: PlatformDep, signed: SignedDep) -> Response:
    return _page(request, platform, signed)


@router.post("/whatif")
def start(
    request: Request,
    platform: PlatformDep,
    signed: FormDep,
    window: Annotated[str, Form()] = "30d",
    set_guarantee: Text = "",
    set_limit: Text = "",
    set_weight: Text = "",
    cohort: Text = "",
    add_nodes: Text = "",
    remove_node: Text = "",
    profile: Annotated[str, Form(max_length=64)] = "",
    placement: Annotated[str, Form(max_length=64)] = "",
    rates: Text = "",
) -> Response:
    signed.principal.require_operator("run what-if replays")
    values = {
        "window": window,
        "set_guarantee": set_guarantee,
        "set_limit": set_limit,
        "set_weight": set_weight,
        "cohort": cohort,
        "add_nodes": add_nodes,
        "remove_node": remove_node,
        "profile": profile,
        "placement": placement,
        "rates": rates,
    }
    now = time.time()
    try:
        if window not in WINDOWS:
            raise InvalidInput(f"unknown window {window!r}", field="window")
        span = WINDOWS[window]
        body = WhatIfRequest(
            since=None if span is None else now - span,
            profile=profile or None,
            placement=placement or None,
            rates=_rates(rates),
            **{name: _items(values[name]) for name in LIST_FIELDS},
        )
        config = {
            "profile": platform.settings.profile,
            "min_runtime_s": platform.settings.min_runtime_s,
        }
        with platform.tx() as s:
            plan = whatif.plan(s, principal=signed.principal, body=body, now=now, **config)
        request = whatif.stored_request(body, now=now, **config)
        task = platform.whatif.submit(plan, request=request)
    except InvalidInput as exc:
        return _page(request, platform, signed, status=422, error=str(exc), values=values)
    return RedirectResponse(f"{PREFIX}/whatif/{task.id}", status_code=303)


@router.get("/whatif/{task_id}")
def task_page(
    request: Request, platform: PlatformDep, signed: SignedDep, task_id: TaskId
) -> Response:
    signed.principal.require_operator("see what-if replays")
    task = whatif.task_out(platform.whatif.get(task_id))
    report = task.report
    return _render(request).page(
        request,
        "whatif_task.html",
        signed,
        active="whatif",
        task=task,
        columns=["tenant", "jobs", *(t for t, _, _ in (columns(report) if report else COLUMNS))],
        rows=comparison_rows(report) if report else [],
        fidelity=fidelity_line(report) if report else "",
        utilization=(
            pair(
                report["before"]["overall"]["utilization"],
                report["after"]["overall"]["utilization"],
                "ratio",
            )
            if report
            else ""
        ),
    )


@router.post("/whatif/{task_id}/cancel")
def cancel(platform: PlatformDep, signed: FormDep, task_id: TaskId) -> Response:
    signed.principal.require_operator("cancel what-if replays")
    platform.whatif.cancel(task_id)
    return RedirectResponse(f"{PREFIX}/whatif/{task_id}", status_code=303)


@router.get("/whatif/{task_id}/waits.png")
def plot(platform: PlatformDep, signed: SignedDep, task_id: TaskId) -> Response:
    signed.principal.require_operator("see what-if replays")
    task = platform.whatif.get(task_id)
    if task.plot_png is None:
        raise NotFound(f"what-if task {task_id} has no plot yet")
    return Response(task.plot_png, media_type="image/png")
