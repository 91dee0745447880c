"""What-if requests of the API and the dashboard: checked into a ``sim.whatif.Plan`` over
the platform's exported history (operator only), and tasks shown as API models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from mosu.core.credits import Rate, RateCard, to_micro
from mosu.core.errors import InvalidInput
from mosu.core.history_api import WhatIfRequest, WhatIfTaskOut
from mosu.engine.policies import POLICIES
from mosu.engine.profiles import PROFILES
from mosu.service.services.auth import OPERATOR, Principal
from mosu.service.services.history_export import export_history
from mosu.service.whatif_tasks import Task
from mosu.sim.whatif import (
    Changes,
    History,
    Plan,
    parse_cohort,
    parse_quota_change,
    parse_weight,
    plan_whatif,
)


def profile_names() -> list[str]:
    return list(PROFILES)


def placement_names() -> list[str]:
    return list(POLICIES)


def changes_of(body: WhatIfRequest) -> Changes:
    guarantees = []
    for text in body.set_guarantee:
        tenant, gpu_type, milli = parse_quota_change(text, "set_guarantee")
        assert milli is not None  # only a limit may be "none"
        guarantees.append((tenant, gpu_type, milli))
    return Changes(
        guarantees=tuple(guarantees),
        limits=tuple(parse_quota_change(x, "set_limit") for x in body.set_limit),
        weights=tuple(parse_weight(x) for x in body.set_weight),
        cohorts=tuple(parse_cohort(x) for x in body.cohort),
        profile=body.profile,
        placement=body.placement,
        add_nodes=tuple(body.add_nodes),
        remove_nodes=tuple(body.remove_node),
        rates=_card(body) if body.rates else None,
        rates_from="the request" if body.rates else "",
    )


def _card(body: WhatIfRequest) -> RateCard:
    """The request's rate lines, in force from the window's first submission."""
    seen: set[str] = set()
    for line in body.rates:
        if line.resource in seen:
            raise InvalidInput(f"{line.resource} is named twice", field="rates")
        seen.add(line.resource)
    return RateCard(
        Rate(
            resource=line.resource,
            effective_ms=0,
            micro_per_hour=to_micro(line.per_hour),
            borrowed_micro_per_hour=None
            if line.borrowed_per_hour is None
            else to_micro(line.borrowed_per_hour),
        )
        for line in body.rates
    )


def plan(
    session: Session,
    *,
    principal: Principal,
    body: WhatIfRequest,
    now: float,
    profile: str,
    min_runtime_s: float | None,
) -> Plan:
    """The checked plan of ``body`` (every change validated before anything runs)."""
    principal.require_operator("run what-if replays")
    try:
        return _plan(session, principal, body, now, profile, min_runtime_s)
    except InvalidInput as exc:
        # The checks name the CLI's options; the API names its body's fields.
        if exc.field:
            exc.field = exc.field.replace("-", "_")
        raise


def _plan(
    session: Session,
    principal: Principal,
    body: WhatIfRequest,
    now: float,
    profile: str,
    min_runtime_s: float | None,
) -> Plan:
    changes = changes_of(body)
    exported = export_history(
        session,
        principal=principal,
        now=now,
        since=body.since,
        until=body.until,
        profile=profile,
        min_runtime_s=min_runtime_s,
    )
    history = History(
        jobs=tuple(exported.jobs),
        tenants=tuple(exported.tenants),
        nodes=tuple(exported.nodes),
        profile=exported.profile,
        min_runtime_s=exported.min_runtime_s,
        origin=exported.origin,
        counts=dict(exported.counts),
        rates=_platform_card(exported.rates, exported.origin),
        changes=tuple(exported.changes),
    )
    return plan_whatif(history, changes, tick_s=body.tick_s)


def _platform_card(lines: list[Rate], origin: float) -> RateCard | None:
    """The platform's card on the trace clock (times from ``origin``), if it has one."""
    if not lines:
        return None
    shift = round(origin * 1000)
    return RateCard(
        Rate(r.resource, r.effective_ms - shift, r.micro_per_hour, r.borrowed_micro_per_hour)
        for r in lines
    )


def stored_request(
    body: WhatIfRequest, *, now: float, profile: str, min_runtime_s: float | None
) -> dict[str, Any]:
    """What planning ``body`` again needs, with its window pinned to end at ``now``, so
    a task taken over after a restart replays the window the operator asked about."""
    pinned = body.model_copy(update={"until": body.until if body.until is not None else now})
    return {
        "body": pinned.model_dump(mode="json"),
        "now": now,
        "profile": profile,
        "min_runtime_s": min_runtime_s,
    }


def replan(session: Session, request: dict[str, Any]) -> Plan:
    """The plan of a stored request (``stored_request``), checked as when it came in."""
    return plan(
        session,
        principal=OPERATOR,
        body=WhatIfRequest.model_validate(request["body"]),
        now=float(request["now"]),
        profile=str(request["profile"]),
        min_runtime_s=request.get("min_runtime_s"),
    )


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def task_out(task: Task) -> WhatIfTaskOut:
    return WhatIfTaskOut(
        id=task.id,
        state=task.state.value,
        progress=round(task.progress, 4),
        phase=task.phase,
        jobs=task.jobs,
        changes=task.changes,
        created_at=_when(task.created_at),
        started_at=_when(task.started_at),
        finished_at=_when(task.finished_at),
        error=task.error,
        report=task.report,
        plot=f"/v1/whatif/{task.id}/waits.png" if task.plot_png else None,
    )
