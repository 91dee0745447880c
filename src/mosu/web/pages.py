"""The dashboard's pages. Each reads through the API's service functions (or the
read-only ``history`` service) with the signed-in principal, and renders a template.

Adding a page: a route here, a template under ``templates/`` extending ``base.html``,
and a line in ``render.NAV``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from mosu.core.api import NAME_PATTERN, JobState
from mosu.core.errors import NotFound
from mosu.core.models import GPU_MILLI, JobKind, NodeState
from mosu.service.services import history, jobs, nodes, queue, tenants, usage
from mosu.service.services.history import visible_tenants
from mosu.web import charts, panels
from mosu.web.app import PREFIX, FormDep, PlatformDep, SignedDep
from mosu.web.render import Renderer

router = APIRouter()
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64)]
QUEUE_PAGE = 100
PENDING = JobState.PENDING.value


def _render(request: Request) -> Renderer:
    return request.app.state.render


def _reading(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.history.get()


def _blank(value: str | None) -> str | None:
    return value or None


# ---------------------------------------------------------------- overview


@router.get("/")
def overview(request: Request, platform: PlatformDep, signed: SignedDep) -> Response:
    who = signed.principal
    with platform.sessions() as s:
        states = history.gpu_states(s)
        cluster_counts = history.job_counts(s)
        own_counts = None if who.is_operator else history.job_counts(s, principal=who)
        preemptions = history.recent_events(
            s, principal=who, to_states=history.PREEMPTION_STATES, limit=10
        )
        alerts = history.recent_events(
            s, principal=who, to_states=history.ALERT_STATES, kinds=history.ALERT_KINDS, limit=10
        )
        own = None
        next_up: list[Any] = []
        if not who.is_operator:
            own = tenants.get_tenant(s, principal=who, name=str(who.tenant))
            _, next_up = queue.queue_page(
                s, principal=who, positions=platform.scheduler.queue_positions, limit=5
            )
    reading = _reading(request)
    capacity = sum(t.total for t in states)
    chart_list = reading.memoized(
        ("overview", who.tenant, capacity),
        lambda: _overview_charts(reading.view(who), who, capacity),
    )
    return _render(request).page(
        request,
        "overview.html",
        signed,
        active="overview",
        states=states,
        cluster_counts=cluster_counts,
        own_counts=own_counts,
        own=own,
        next_up=next_up,
        preemptions=preemptions,
        alerts=alerts,
        charts=chart_list,
        history_at=reading.read_at,
    )


def _overview_charts(view, who, capacity: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    lines = {"sum of guarantees": view.guarantee_total, "capacity": capacity}
    if not who.is_operator:
        lines = {"your guarantee": sum(view.guarantees.values()), "capacity": capacity}
    return [
        charts.stacked(
            "GPUs allocated, last 24 h",
            view.windows["24h"],
            view.allocated["24h"],
            unit="GPUs",
            lines=lines,
        ),
        charts.stacked(
            "GPUs allocated, last 7 days",
            view.windows["7d"],
            view.allocated["7d"],
            unit="GPUs",
            lines=lines,
        ),
        charts.stacked(
            "Jobs pending, last 7 days", view.windows["7d"], view.pending["7d"], unit="jobs"
        ),
    ]


# ---------------------------------------------------------------- tenants


def _tenant_rows(platform, who, reading, states, only=None) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The tenants table's rows (``only``: that tenant's row alone)."""
    with platform.sessions() as s:
        listed = [t for t in tenants.list_tenants(s, principal=who) if only in (None, t.name)]
        demand = history.pending_demand(s, principal=who)
    capacity = {t.gpu_type: t.total for t in states}
    attainment = visible_tenants(who, reading.attainment)
    view = reading.view(who)
    rows = []
    for t in listed:
        guarantee = sum(q.guaranteed for q in t.quotas)
        limits = [q.limit for q in t.quotas]
        limit = None if not limits or any(x is None for x in limits) else sum(limits)  # type: ignore[misc]
        quota = {q.gpu_type: q for q in t.quotas}
        held = sum(t.allocated.values())
        within = sum(
            min(v, quota[g].guaranteed if g in quota else 0.0) for g, v in t.allocated.items()
        )
        at_limit = any(
            g in quota and quota[g].limit is not None and v >= quota[g].limit
            for g, v in t.allocated.items()
        )
        wants = demand.get(t.name, history.TenantDemand())
        share = max(
            (v / capacity[g] for g, v in t.allocated.items() if capacity.get(g)), default=0.0
        )
        starved = wants.pending_jobs > 0 and (held < guarantee or wants.waiting_for_guarantee > 0)
        status = []
        if starved:
            status.append("starved")
        if held - within > 1e-9:
            status.append("borrowing")
        if at_limit:
            status.append("at limit")
        if not status and held == 0 and wants.pending_jobs == 0:
            status.append("idle")
        week = view.allocated["7d"].get(t.name, [])
        rows.append(
            {
                "tenant": t,
                "guarantee": guarantee,
                "limit": limit,
                "held": held,
                "within": within,
                "borrowed": held - within,
                "demand": wants,
                "attainment": attainment.get(t.name),
                "dominant_share": share,
                "weighted_share": share / (t.weight or 1.0),
                "status": status,
                "spark": reading.memoized(
                    ("spark", t.name, guarantee), lambda w=week, g=guarantee: _sparkline(w, g)
                ),
            }
        )
    return rows


def _sparkline(values: list[float], guarantee: float, width: int = 120, height: int = 24) -> dict:
    """Points of an SVG polyline for a week of allocation, and the guarantee's height."""
    top = max([*values, guarantee, 1e-9])
    n = max(len(values) - 1, 1)
    points = " ".join(
        f"{i * width / n:.1f},{height - v / top * (height - 2) - 1:.1f}"
        for i, v in enumerate(values)
    )
    return {
        "points": points,
        "guarantee_y": round(height - guarantee / top * (height - 2) - 1, 1),
        "width": width,
        "height": height,
    }


@router.get("/tenants")
def tenants_page(
    request: Request,
    platform: PlatformDep,
    signed: SignedDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    if not signed.principal.is_operator:
        return RedirectResponse(f"{PREFIX}/tenants/{signed.principal.tenant}", status_code=303)
    with platform.sessions() as s:
        states = history.gpu_states(s)
    reading = _reading(request)
    rows = _tenant_rows(platform, signed.principal, reading, states)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for flag in row["status"]:
            counts[flag] += 1
    shown = [r for r in rows if not status or status in r["status"]]
    return _render(request).page(
        request,
        "tenants.html",
        signed,
        active="tenants",
        rows=shown,
        total=len(rows),
        counts=counts,
        chosen=status,
        history_at=reading.read_at,
    )


@router.get("/tenants/{name}")
def tenant_page(request: Request, platform: PlatformDep, signed: SignedDep, name: Name) -> Response:
    who = signed.principal
    with platform.sessions() as s:
        tenant = tenants.get_tenant(s, principal=who, name=name)  # another tenant's: 404
        states = history.gpu_states(s)
        recent = jobs.list_jobs(s, principal=who, tenant=name, limit=20)
        _, waiting = queue.queue_page(
            s, principal=who, positions=platform.scheduler.queue_positions, tenant=name, limit=10
        )
    reading = _reading(request)
    rows = _tenant_rows(platform, who, reading, states, only=name)
    view = reading.view(who)
    guarantee = sum(q.guaranteed for q in tenant.quotas)
    chart_list = []
    for key, title in (("7d", "last 7 days"), ("24h", "last 24 h")):
        values = view.allocated[key].get(name, [0.0] * view.windows[key].buckets)
        chart = charts.single(
            f"{name}: GPUs allocated, {title}",
            view.windows[key],
            name,
            values,
            unit="GPUs",
            color=charts.tenant_color(name),
        )
        chart["lines"] = [{"label": "guarantee", "value": guarantee}]
        chart_list.append(chart)
    return _render(request).page(
        request,
        "tenant.html",
        signed,
        active="tenants",
        tenant=tenant,
        row=rows[0] if rows else None,
        recent=recent,
        waiting=waiting,
        charts=chart_list,
    )


# ---------------------------------------------------------------- queue


@router.get("/queue")
def queue_page(
    request: Request,
    platform: PlatformDep,
    signed: SignedDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    gpu_type: Annotated[str | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    who = signed.principal
    tenant, kind, gpu_type = _blank(tenant), _blank(kind), _blank(gpu_type)
    if kind is not None and kind not in {k.value for k in JobKind}:
        kind = None
    with platform.sessions() as s:
        total, entries = queue.queue_page(
            s,
            principal=who,
            positions=platform.scheduler.queue_positions,
            tenant=tenant,
            kind=kind,
            gpu_type=gpu_type,
            offset=(page - 1) * QUEUE_PAGE,
            limit=QUEUE_PAGE,
        )
        types = [t.gpu_type for t in history.gpu_states(s)]
    names = _reading(request).history.tenants if who.is_operator else []
    pages = max(1, -(-total // QUEUE_PAGE))
    return _render(request).page(
        request,
        "queue.html",
        signed,
        active="queue",
        entries=entries,
        total=total,
        page=page,
        pages=pages,
        filters={"tenant": tenant or "", "kind": kind or "", "gpu_type": gpu_type or ""},
        tenant_names=names,
        kinds=[k.value for k in JobKind],
        gpu_types=types,
    )


# ---------------------------------------------------------------- jobs


@router.get("/jobs")
def jobs_page(
    request: Request,
    platform: PlatformDep,
    signed: SignedDep,
    state: Annotated[str | None, Query(max_length=16)] = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 100,
) -> Response:
    who = signed.principal
    state, tenant = _blank(state), _blank(tenant)
    chosen = JobState(state) if state in {s.value for s in JobState} else None
    with platform.sessions() as s:
        listed = jobs.list_jobs(s, principal=who, state=chosen, tenant=tenant, limit=limit)
    names = _reading(request).history.tenants if who.is_operator else []
    return _render(request).page(
        request,
        "jobs.html",
        signed,
        active="jobs",
        jobs=listed,
        limit=limit,
        filters={"state": chosen.value if chosen else "", "tenant": tenant or ""},
        states=[s.value for s in JobState],
        tenant_names=names,
    )


def _timeline(events: list[Any], submitted: datetime, end: datetime) -> list[dict[str, Any]]:
    """Segments of a job's life (pending, starting, running, preempted) for a bar."""
    span = max((end - submitted).total_seconds(), 1.0)
    segments = []
    state, since = PENDING, submitted
    for e in events:
        if e.kind != "state" or e.to_state is None:
            continue
        if e.at > since:
            segments.append((state, since, e.at))
        state, since = e.to_state, max(e.at, since)
    if end > since and not JobState(state).finished:
        segments.append((state, since, end))
    return [
        {
            "state": st,
            "left": round((a - submitted).total_seconds() / span * 100, 3),
            "width": max(round((b - a).total_seconds() / span * 100, 3), 0.2),
            "title": f"{st}: {a:%Y-%m-%d %H:%M:%S} to {b:%H:%M:%S} UTC",
        }
        for st, a, b in segments
    ]


@router.get("/jobs/{job_id}")
def job_page(request: Request, platform: PlatformDep, signed: SignedDep, job_id: JobId) -> Response:
    who = signed.principal
    with platform.sessions() as s:
        job = jobs.get_job(s, principal=who, job_id=job_id)
        events = jobs.events(s, principal=who, job_id=job_id)
        why = jobs.why(
            s, principal=who, job_id=job_id, position=platform.scheduler.queue_positions.get(job_id)
        )
        allocations = history.job_allocations(s, principal=who, job_id=job_id)
    end = job.finished_at or datetime.now(UTC)
    attempts: dict[int, list[Any]] = defaultdict(list)
    for a in allocations:
        attempts[a.attempt].append(a)
    return _render(request).page(
        request,
        "job.html",
        signed,
        active="jobs",
        job=job,
        events=events,
        why=why,
        attempts=dict(sorted(attempts.items())),
        timeline=_timeline(events, job.submitted_at, end),
        preemptions=sum(1 for e in events if e.to_state == "preempted"),
        restarts=sum(1 for e in events if e.to_state == "preempted" and e.reason == "restart"),
    )


@router.get("/jobs/{job_id}/why")
def job_why(request: Request, platform: PlatformDep, signed: SignedDep, job_id: JobId) -> Response:
    with platform.sessions() as s:
        why = jobs.why(
            s,
            principal=signed.principal,
            job_id=job_id,
            position=platform.scheduler.queue_positions.get(job_id),
        )
    return _render(request).fragment("_why.html", why=why, prefix=PREFIX)


@router.get("/jobs/{job_id}/log")
def job_log(
    platform: PlatformDep,
    signed: SignedDep,
    job_id: JobId,
    replica: Annotated[int, Query(ge=0, le=4096)] = 0,
    offset: Annotated[int, Query(ge=-1, le=2**40)] = -1,
) -> JSONResponse:
    """A log's new text since ``offset`` (-1: its last 64 KiB), read by the API's reader."""
    if offset < 0:
        offset = max(0, _log_size(platform, job_id, replica) - 65536)
    with platform.sessions() as s:
        chunk = jobs.read_logs(
            s,
            principal=signed.principal,
            logs_dir=platform.settings.logs_dir,
            job_id=job_id,
            replica=replica,
            offset=offset,
            limit=262144,
        )
    return JSONResponse(chunk.model_dump(mode="json"))


def _log_size(platform, job_id: int, replica: int) -> int:  # type: ignore[no-untyped-def]
    path = jobs.log_path(platform.settings.logs_dir, job_id, replica)
    try:
        return path.stat().st_size
    except OSError:
        return 0


@router.post("/jobs/{job_id}/cancel")
def cancel_job(platform: PlatformDep, signed: FormDep, job_id: JobId) -> Response:
    with platform.tx() as s:
        jobs.cancel(s, principal=signed.principal, job_id=job_id)
    platform.scheduler.wake()
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)


# ---------------------------------------------------------------- nodes


def _heatmap(gpus: history.GpuMap) -> dict[str, Any]:
    """Compact JSON for the canvas: a row per node, and every holder as five numbers
    (node, GPU, tenant index, share in milli, job id) in one flat list."""
    tenant_index: dict[str, int] = {}
    held: dict[str, float] = defaultdict(float)
    flat: list[int] = []
    for node, gpu, tenant, job_id, milli in gpus.holders:
        flat += (node, gpu, tenant_index.setdefault(tenant, len(tenant_index)), milli, job_id)
        held[tenant] += milli / GPU_MILLI
    names = list(tenant_index)
    return {
        "tenants": names,
        "colors": [charts.tenant_color(t) for t in names],
        "nodes": [list(n) for n in gpus.nodes],
        "holders": flat,
        "held": {t: round(held[t], 3) for t in names},
    }


@router.get("/nodes")
def nodes_page(request: Request, platform: PlatformDep, signed: SignedDep) -> Response:
    with platform.sessions() as s:
        gpus = history.gpu_map(s, principal=signed.principal)
    data = _heatmap(gpus)
    legend = sorted(data["held"].items(), key=lambda kv: (-kv[1], kv[0]))[:24]
    by_state: dict[str, int] = defaultdict(int)
    for n in gpus.nodes:
        by_state[n[3]] += 1
    return _render(request).page(
        request,
        "nodes.html",
        signed,
        active="nodes",
        heatmap=data,
        legend=legend,
        by_state=dict(by_state),
        node_count=len(gpus.nodes),
    )


@router.get("/nodes/{name}")
def node_panel(request: Request, platform: PlatformDep, signed: SignedDep, name: Name) -> Response:
    with platform.sessions() as s:
        node = next(
            (n for n in nodes.list_nodes(s, principal=signed.principal) if n.name == name), None
        )
        if node is None:
            raise NotFound(f"no node named {name!r}", field="node")
        holders = history.gpu_map(s, principal=signed.principal).of(name)
    return _render(request).page(
        request, "node.html", signed, active="nodes", node=node, holders=holders
    )


@router.post("/nodes/{name}/{action}")
def drain_node(platform: PlatformDep, signed: FormDep, name: Name, action: str) -> Response:
    states = {"drain": NodeState.DRAINING, "undrain": NodeState.READY}
    if action not in states:
        raise NotFound(f"no action {action!r} on nodes", field="action")
    with platform.tx() as s:
        nodes.set_state(s, principal=signed.principal, name=name, state=states[action])
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return RedirectResponse(f"{PREFIX}/nodes/{name}", status_code=303)


# ---------------------------------------------------------------- usage


def _usage_table(records: list[Any], days: int, today: datetime) -> dict[str, Any]:
    wanted = [(today - timedelta(days=i)).date().isoformat() for i in range(days - 1, -1, -1)]
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        per[r.tenant][r.day] += r.gpu_seconds / 3600
    rows = []
    for tenant, by_day in per.items():
        shown = [round(by_day.get(d, 0.0), 1) for d in wanted]
        rows.append({"tenant": tenant, "days": shown, "total": round(sum(shown), 1)})
    rows.sort(key=lambda r: (-r["total"], r["tenant"]))
    totals = [round(sum(r["days"][i] for r in rows), 1) for i in range(len(wanted))]
    return {"days": wanted, "rows": rows, "totals": totals}


@router.get("/usage")
def usage_page(
    request: Request,
    platform: PlatformDep,
    signed: SignedDep,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
) -> Response:
    who = signed.principal
    now = datetime.now(UTC)
    with platform.sessions() as s:
        records = usage.usage(s, principal=who)
        extra = [p for p in (make(s, who, now) for make in panels.USAGE_PANELS) if p is not None]
    table = _usage_table(records, days, now)
    chart = {
        "title": f"GPU-hours per day, last {days} days",
        "unit": "GPU-hours",
        "stack": True,
        "bars": True,
        "x": [datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp() for d in table["days"]],
        "series": [],
        "lines": [],
    }
    top = table["rows"][: charts.TOP]
    rest = table["rows"][charts.TOP :]
    for row in top:
        chart["series"].append(
            {
                "label": row["tenant"],
                "color": charts.tenant_color(row["tenant"]),
                "values": row["days"],
            }
        )
    if rest:
        summed = [round(sum(r["days"][i] for r in rest), 1) for i in range(len(table["days"]))]
        chart["series"].append(
            {"label": f"{len(rest)} more", "color": charts.OTHERS_COLOR, "values": summed}
        )
    return _render(request).page(
        request,
        "usage.html",
        signed,
        active="usage",
        table=table,
        usage_chart=chart,
        days=days,
        panels=extra,
    )


@router.get("/usage.csv")
def usage_csv(platform: PlatformDep, signed: SignedDep) -> Response:
    with platform.sessions() as s:
        records = usage.usage(s, principal=signed.principal)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tenant", "gpu_type", "day", "gpu_hours"])
    for r in records:
        writer.writerow([r.tenant, r.gpu_type, r.day, f"{r.gpu_seconds / 3600:.6f}"])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="mosu-usage.csv"'},
    )
