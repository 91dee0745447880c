"""Model services: create, read, scale, delete, approve for the showcase. A tenant sees
and changes only its own services (others are 404); approval is the operator's."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.errors import Conflict, InvalidInput, NotFound
from mosu.core.service_api import (
    ReplicaOut,
    ServiceOut,
    ServiceScale,
    ServiceSpec,
)
from mosu.core.submission import Submission
from mosu.service.db.convert import ts
from mosu.service.db.gateway_rows import ModelServiceRow, ServiceReplicaRow
from mosu.service.db.rows import JobRow
from mosu.service.services import jobs
from mosu.service.services.auth import Principal
from mosu.service.services.catalog import CatalogCache

LIVE_REPLICA_STATES = ("starting", "ready", "draining")


def _visible(
    session: Session, principal: Principal, name: str, tenant: str | None
) -> ModelServiceRow:
    query = select(ModelServiceRow).where(
        ModelServiceRow.name == name, ModelServiceRow.deleted_at.is_(None)
    )
    if not principal.is_operator:
        query = query.where(ModelServiceRow.tenant == principal.tenant)
    elif tenant is not None:
        query = query.where(ModelServiceRow.tenant == tenant)
    rows = session.scalars(query).all()
    if not rows:
        raise NotFound(f"no service named {name!r}", field="name")
    if len(rows) > 1:
        raise InvalidInput(
            f"several tenants have a service {name!r}; name the tenant", field="tenant"
        )
    return rows[0]


def service_out(
    session: Session, row: ModelServiceRow, *, with_replicas: bool = True
) -> ServiceOut:
    replicas = session.execute(
        select(ServiceReplicaRow, JobRow.state)
        .join(JobRow, JobRow.id == ServiceReplicaRow.job_id)
        .where(
            ServiceReplicaRow.service_id == row.id,
            ServiceReplicaRow.state.in_(LIVE_REPLICA_STATES),
        )
        .order_by(ServiceReplicaRow.id)
    ).all()
    out = [
        ReplicaOut(
            job_id=r.job_id,
            state=r.state,
            job_state=job_state,
            endpoint=f"http://{r.host}:{r.port}",
            inflight=r.inflight,
        )
        for r, job_state in replicas
    ]
    return ServiceOut(
        name=row.name,
        tenant=row.tenant,
        model=row.model,
        min_replicas=row.min_replicas,
        max_replicas=row.max_replicas,
        desired=row.desired,
        ready=sum(1 for r in out if r.state == "ready"),
        public=row.public,
        approved=row.approved,
        description=row.description,
        inflight=row.inflight,
        created_at=ts(row.created_at),
        replicas=out if with_replicas else [],
        spec=row.spec,
    )


def create(
    session: Session,
    *,
    principal: Principal,
    spec: ServiceSpec,
    tenant: str | None,
    catalog: CatalogCache | None = None,
) -> ServiceOut:
    # The replica's job is checked as any submission would be: it could start somewhere,
    # its tenant exists and may hold it, its secrets exist.
    owner = jobs.check_submission(
        session,
        principal=principal,
        job=Submission.of(spec.replica_spec(0, 1)),
        tenant=tenant,
        catalog=catalog,
    )
    taken = session.scalar(
        select(ModelServiceRow.id).where(
            (ModelServiceRow.model == spec.model)
            | ((ModelServiceRow.tenant == owner) & (ModelServiceRow.name == spec.name))
        )
    )
    if taken is not None:
        raise Conflict(
            f"a service named {spec.name!r} or serving {spec.model!r} exists", field="model"
        )
    row = ModelServiceRow(
        tenant=owner,
        name=spec.name,
        model=spec.model,
        spec=spec.model_dump(mode="json"),
        min_replicas=spec.replicas.min,
        max_replicas=spec.replicas.max,
        desired=spec.replicas.min,
        public=spec.public,
        approved=False,
        description=spec.description,
        created_at=time.time(),
        inflight=0,
        waiting=0,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a service serving {spec.model!r} exists", field="model") from None
    return service_out(session, row)


def own_tenant(principal: Principal, tenant: str | None) -> str | None:
    """The tenant a listing is about: a tenant's own (another is 404), or the operator's
    choice (None: all)."""
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        return principal.tenant
    return tenant


def list_services(
    session: Session, *, principal: Principal, tenant: str | None = None
) -> list[ServiceOut]:
    query = select(ModelServiceRow).where(ModelServiceRow.deleted_at.is_(None))
    tenant = own_tenant(principal, tenant)
    if tenant is not None:
        query = query.where(ModelServiceRow.tenant == tenant)
    return [service_out(session, r) for r in session.scalars(query.order_by(ModelServiceRow.id))]


def show(
    session: Session, *, principal: Principal, name: str, tenant: str | None = None
) -> ServiceOut:
    return service_out(session, _visible(session, principal, name, tenant))


def scale(
    session: Session,
    *,
    principal: Principal,
    name: str,
    body: ServiceScale,
    tenant: str | None = None,
) -> ServiceOut:
    row = _visible(session, principal, name, tenant)
    low = row.min_replicas if body.min is None else body.min
    high = row.max_replicas if body.max is None else body.max
    if high < low:
        raise InvalidInput("max must be at least min", field="max")
    row.min_replicas, row.max_replicas = low, high
    wanted = row.desired if body.replicas is None else body.replicas
    row.desired = max(low, min(high, wanted))
    row.scaled_at = time.time()
    session.flush()
    return service_out(session, row)


def delete(session: Session, *, principal: Principal, name: str, tenant: str | None = None) -> None:
    """Stop serving: replicas drain and stop; the model name is free again."""
    row = _visible(session, principal, name, tenant)
    row.deleted_at = time.time()
    row.min_replicas = row.max_replicas = row.desired = 0
    row.model = f"{row.model}#deleted-{row.id}"[:128]
    session.flush()


def set_approved(
    session: Session, *, principal: Principal, name: str, approved: bool, tenant: str | None = None
) -> ServiceOut:
    principal.require_operator("approve services for the showcase")
    row = _visible(session, principal, name, tenant)
    if approved and not row.public:
        raise Conflict(
            f"service {name!r} is not public; its spec must say public: true", field="name"
        )
    row.approved = approved
    session.flush()
    return service_out(session, row)


def replica_job(spec: dict, index: int, port: int) -> Submission:
    """The job of a service's replica ``index`` listening on ``port``, from the stored
    service spec."""
    return Submission.of(ServiceSpec.model_validate(spec, strict=False).replica_spec(index, port))


ACTIVE_JOB = (
    JobState.PENDING.value,
    JobState.STARTING.value,
    JobState.RUNNING.value,
    JobState.PREEMPTED.value,
)
