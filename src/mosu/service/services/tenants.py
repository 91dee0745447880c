"""Tenants and their quotas."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import (
    QuotaSpec,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantQuotasOut,
    TenantUpdate,
    TokenCreate,
    TokenOut,
)
from mosu.core.errors import Conflict, NotFound
from mosu.core.models import GPU_MILLI, Quota
from mosu.service.db.convert import tenant_out
from mosu.service.db.rows import AllocationRow, EventRow, NodeRow, QuotaRow, TenantRow
from mosu.service.services import credits
from mosu.service.services.auth import Principal, create_token, issue_token


def _milli(value: float | None) -> int | None:
    return None if value is None else round(value * GPU_MILLI)


def _set_quotas(session: Session, tenant: str, quotas: dict[str, QuotaSpec]) -> None:
    for gpu_type, spec in quotas.items():
        row = session.get(QuotaRow, (tenant, gpu_type))
        if row is None:
            row = QuotaRow(tenant=tenant, gpu_type=gpu_type)
            session.add(row)
        row.guaranteed_milli = _milli(spec.guaranteed) or 0
        row.limit_milli = _milli(spec.limit)


def create_tenant(session: Session, *, principal: Principal, body: TenantCreate) -> TenantCreated:
    principal.require_operator("create tenants")
    if session.get(TenantRow, body.name) is not None:
        raise Conflict(f"tenant {body.name!r} already exists", field="name")
    now = time.time()
    row = TenantRow(name=body.name, weight=body.weight, created_at=now, cohort=body.cohort)
    session.add(row)
    session.flush()
    _set_quotas(session, body.name, body.quotas)
    if body.on_credits_exhausted is not None:
        credits.set_policy(session, body.name, body.on_credits_exhausted)
    token, _row = issue_token(session, tenant=body.name, now=now)
    message = "; ".join(
        filter(
            None,
            (
                _quota_text(body.quotas),
                _cohort_text(body.cohort) if body.cohort is not None else "",
                _weight_text(body.weight) if body.weight != 1.0 else "",
            ),
        )
    )
    session.add(EventRow(at=now, tenant=body.name, kind="tenant-created", message=message))
    session.flush()
    warnings = guarantee_warnings(session, body.quotas)
    return TenantCreated(tenant=_out(session, row), token=token, warnings=warnings)


def guarantee_warnings(session: Session, quotas: dict[str, QuotaSpec]) -> list[str]:
    """What the cluster cannot honour of these guarantees (already stored): a GPU type it
    has none of, or guarantees of a type adding up to more than it has. A warning, not an
    error: nodes may be declared after tenants, and an operator may over-commit knowingly."""
    capacity: dict[str, int] = defaultdict(int)
    for gpu_type, gpus in session.execute(select(NodeRow.gpu_type, NodeRow.gpus)):
        capacity[gpu_type] += gpus
    asked = sorted(t for t, q in quotas.items() if q.guaranteed > 0)
    totals: dict[str, int] = defaultdict(int)
    for q in session.scalars(select(QuotaRow).where(QuotaRow.gpu_type.in_(asked))):
        totals[q.gpu_type] += q.guaranteed_milli
    known = ", ".join(sorted(capacity)) or "none yet"
    out = []
    for gpu_type in asked:
        total = totals[gpu_type] / GPU_MILLI
        if capacity[gpu_type] == 0:
            out.append(
                f"the cluster has no {gpu_type} GPUs (its types: {known}); "
                f"this guarantee cannot be met until {gpu_type} nodes join"
            )
        elif total > capacity[gpu_type]:
            out.append(
                f"{gpu_type} guarantees now total {total:g} GPUs but the cluster has "
                f"{capacity[gpu_type]}: over-committed by {total - capacity[gpu_type]:g} "
                "(mosu cluster shows it)"
            )
    return out


def _quota_text(quotas: dict[str, QuotaSpec]) -> str:
    return ", ".join(
        f"{t}: guarantee {q.guaranteed:g}" + ("" if q.limit is None else f", limit {q.limit:g}")
        for t, q in sorted(quotas.items())
    )


def _cohort_text(cohort: str | None) -> str:
    return f"cohort {cohort}" if cohort is not None else "default cohort"


def _weight_text(weight: float) -> str:
    return f"weight {weight:g}"


@dataclass(frozen=True)
class TenantSettings:
    """What one tenant event (``tenant-created``, ``quota-changed``, ``tenant-changed``)
    set, read back from its message: quotas by GPU type (GPU milli), the weight, the
    cohort (``cohort_set`` False when the event left it alone; None: the default)."""

    quotas: dict[str, Quota] = field(default_factory=dict)
    weight: float | None = None
    cohort: str | None = None
    cohort_set: bool = False


_QUOTA_PART = re.compile(r"^([^\s:,;]+): guarantee ([^\s,;]+)(?:, limit ([^\s,;]+))?")


def settings_of(kind: str, message: str) -> TenantSettings:
    """The settings a tenant event's message records (the inverse of the texts above)."""
    quotas: dict[str, Quota] = {}
    weight: float | None = None
    cohort: str | None = None
    cohort_set = False
    for part in message.split("; "):
        rest = part
        while (m := _QUOTA_PART.match(rest)) is not None:
            limit = None if m.group(3) is None else _milli(float(m.group(3)))
            quotas[m.group(1)] = Quota(_milli(float(m.group(2))) or 0, limit)
            rest = rest[m.end() :].removeprefix(", ")
        for item in rest.split(", ") if rest else ():
            if item.startswith("weight "):
                weight = float(item.removeprefix("weight "))
            elif item.startswith("cohort "):
                cohort, cohort_set = item.removeprefix("cohort "), True
            elif item == "default cohort":
                cohort, cohort_set = None, True
    if kind == "tenant-created":
        cohort_set = True  # created in the default cohort unless the message names one
    return TenantSettings(quotas, weight, cohort, cohort_set)


def get_row(session: Session, name: str) -> TenantRow:
    row = session.get(TenantRow, name)
    if row is None:
        raise NotFound(f"no tenant named {name!r}", field="tenant")
    return row


def _allocated(session: Session, tenant: str | None) -> dict[str, dict[str, float]]:
    query = select(
        AllocationRow.tenant,
        AllocationRow.gpu_type,
        AllocationRow.gpu_indices,
        AllocationRow.gpu_milli,
    ).where(AllocationRow.released_at.is_(None))
    if tenant is not None:
        query = query.where(AllocationRow.tenant == tenant)
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for owner, gpu_type, indices, milli in session.execute(query):
        gpus = len(indices.split(",")) if indices else 0
        out[owner][gpu_type] += gpus * milli / GPU_MILLI
    return out


def _out(session: Session, row: TenantRow) -> TenantOut:
    quotas = list(session.scalars(select(QuotaRow).where(QuotaRow.tenant == row.name)))
    allocated = _allocated(session, row.name).get(row.name, {})
    return tenant_out(row, quotas, dict(sorted(allocated.items())))


def list_tenants(session: Session, *, principal: Principal) -> list[TenantOut]:
    query = select(TenantRow).order_by(TenantRow.name)
    quota_query = select(QuotaRow)
    scope = None
    if not principal.is_operator:
        scope = principal.tenant
        query = query.where(TenantRow.name == scope)
        quota_query = quota_query.where(QuotaRow.tenant == scope)
    # Three queries for any number of tenants, not two per tenant.
    quotas: dict[str, list[QuotaRow]] = defaultdict(list)
    for q in session.scalars(quota_query):
        quotas[q.tenant].append(q)
    allocated = _allocated(session, scope)
    return [
        tenant_out(row, quotas[row.name], dict(sorted(allocated.get(row.name, {}).items())))
        for row in session.scalars(query)
    ]


def get_tenant(session: Session, *, principal: Principal, name: str) -> TenantOut:
    if not principal.is_operator and principal.tenant != name:
        raise NotFound(f"no tenant named {name!r}", field="tenant")
    return _out(session, get_row(session, name))


def update_quotas(
    session: Session,
    *,
    principal: Principal,
    name: str,
    quotas: dict[str, QuotaSpec],
    weight: float | None,
) -> TenantQuotasOut:
    principal.require_operator("change quotas")
    row = get_row(session, name)
    _set_quotas(session, name, quotas)
    if weight is not None:
        row.weight = weight
    message = _quota_text(quotas)
    if weight is not None:
        message = "; ".join(filter(None, (message, _weight_text(weight))))
    session.add(EventRow(at=time.time(), tenant=name, kind="quota-changed", message=message))
    session.flush()
    out = _out(session, row)
    return TenantQuotasOut(**dict(out), warnings=guarantee_warnings(session, quotas))


def update_tenant(
    session: Session, *, principal: Principal, name: str, body: TenantUpdate
) -> TenantOut:
    """Change what ``body`` names (weight, cohort); a field it leaves out is kept."""
    principal.require_operator("change tenants")
    row = get_row(session, name)
    changes = []
    if body.weight is not None and body.weight != row.weight:
        row.weight = body.weight
        changes.append(_weight_text(body.weight))
    if body.sets_cohort and body.cohort != row.cohort:
        row.cohort = body.cohort
        changes.append(_cohort_text(body.cohort))
    if body.on_credits_exhausted is not None:
        credits.set_policy(session, name, body.on_credits_exhausted)
        changes.append(f"on credits exhausted: {body.on_credits_exhausted.value}")
    if changes:
        session.add(
            EventRow(at=time.time(), tenant=name, kind="tenant-changed", message=", ".join(changes))
        )
    session.flush()
    return _out(session, row)


def new_token(session: Session, *, principal: Principal, name: str) -> TokenOut:
    principal.require_operator("issue tokens")
    get_row(session, name)
    return create_token(session, principal=principal, body=TokenCreate(tenant=name))
