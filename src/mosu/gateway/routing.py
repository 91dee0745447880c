"""What the gateway routes by: each model's service and its ready replicas, and the keys.

A ``RouteTable`` is an immutable snapshot read from the store; the gateway swaps in a new
one every refresh (a quarter second by default), so a replica drained or stopped by the
controller leaves routing within one refresh, and a revoked key is refused as quickly.
The same pass reports the gateway's load (requests open per service and replica) back to
the store, where the controller's autoscaler and drains read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.service.db.gateway_rows import GatewayKeyRow, ModelServiceRow, ServiceReplicaRow
from mosu.service.db.rows import JobRow


@dataclass(frozen=True, slots=True)
class Replica:
    id: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Route:
    service_id: int
    model: str
    tenant: str
    public: bool
    """Public and approved by the operator: callable by other tenants' keys and the showcase."""
    description: str
    min_replicas: int
    max_replicas: int
    replicas: tuple[Replica, ...]
    audit_prompts: bool = False
    """The company lets the showcase's audit record keep visitors' prompts."""


@dataclass(frozen=True, slots=True)
class Key:
    id: int
    tenant: str | None
    models: frozenset[str]
    rpm: int | None
    tpm: int | None
    showcase: bool

    def may_call(self, route: Route) -> bool:
        if route.model not in self.models and "*" not in self.models:
            return False
        if self.showcase:
            return route.public
        return route.public or route.tenant == self.tenant


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: dict[str, Route] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    """By the key's hash."""
    showcase_key: str | None = None
    """Hash of a live showcase key, if the operator made one."""


def load_table(session: Session) -> RouteTable:
    services = session.scalars(
        select(ModelServiceRow).where(ModelServiceRow.deleted_at.is_(None))
    ).all()
    ready = session.execute(
        select(
            ServiceReplicaRow.id,
            ServiceReplicaRow.service_id,
            ServiceReplicaRow.host,
            ServiceReplicaRow.port,
        )
        .join(JobRow, JobRow.id == ServiceReplicaRow.job_id)
        .where(
            ServiceReplicaRow.state == "ready",
            JobRow.state == JobState.RUNNING.value,
            JobRow.stop_reason.is_(None),
        )
        .order_by(ServiceReplicaRow.id)
    ).all()
    by_service: dict[int, list[Replica]] = {}
    for rid, sid, host, port in ready:
        by_service.setdefault(sid, []).append(Replica(rid, host, port))
    routes = {
        s.model: Route(
            service_id=s.id,
            model=s.model,
            tenant=s.tenant,
            public=bool(s.public and s.approved),
            description=s.description,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            replicas=tuple(by_service.get(s.id, ())),
            audit_prompts=bool(s.spec.get("audit_prompts")),
        )
        for s in services
    }
    keys: dict[str, Key] = {}
    showcase = None
    for row in session.scalars(select(GatewayKeyRow).where(GatewayKeyRow.revoked_at.is_(None))):
        keys[row.hash] = _key(row)
        if row.showcase:
            showcase = row.hash
    return RouteTable(routes=routes, keys=keys, showcase_key=showcase)


def _key(row: GatewayKeyRow) -> Key:
    return Key(
        id=row.id,
        tenant=row.tenant,
        models=frozenset(row.models),
        rpm=row.rpm,
        tpm=row.tpm,
        showcase=row.showcase,
    )


def key_by_hash(session: Session, digest: str) -> Key | None:
    row = session.scalar(
        select(GatewayKeyRow).where(
            GatewayKeyRow.hash == digest, GatewayKeyRow.revoked_at.is_(None)
        )
    )
    return None if row is None else _key(row)


def report_load(
    session: Session,
    *,
    now: float,
    services: dict[int, tuple[int, int]],
    replicas: dict[int, int],
) -> None:
    """Write requests open per service (in flight, of which waiting) and per replica."""
    for service_id, (inflight, waiting) in services.items():
        session.execute(
            update(ModelServiceRow)
            .where(ModelServiceRow.id == service_id)
            .values(inflight=inflight, waiting=waiting, load_at=now)
        )
    for replica_id, inflight in replicas.items():
        session.execute(
            update(ServiceReplicaRow)
            .where(ServiceReplicaRow.id == replica_id)
            .values(inflight=inflight)
        )
