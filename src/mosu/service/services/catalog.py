"""A short-lived in-memory copy of what submissions are checked against: the nodes
and the tenants' quotas. Read by every submit, changed rarely; writes through this
server invalidate it at once, and a change made by another server is seen within
``ttl_s``. Scheduling never reads it (the loop loads its own snapshot)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.service.db.rows import NodeRow, QuotaRow, TenantRow


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Nodes alike in everything a submission is checked against, and how many."""

    gpu_type: str
    gpus: int
    cpu_milli: int
    mem_mib: int
    state: str
    vendor: str = "nvidia"
    count: int = 1


@dataclass(frozen=True, slots=True)
class Catalog:
    nodes: tuple[NodeFacts, ...]
    """The nodes by kind: a cluster of a thousand nodes is a handful of kinds, and every
    submission's checks walk the kinds, not the nodes."""
    limits: dict[str, dict[str, int | None]]
    """Tenant → GPU type → limit in milli (None: no limit); every tenant has an entry."""


class CatalogCache:
    def __init__(self, ttl_s: float = 1.0) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: Catalog | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._value = None

    def get(self, session: Session, *, require_tenant: str | None = None) -> Catalog:
        """The cached catalog; reloaded when stale or when ``require_tenant`` is missing
        (a tenant created through another server a moment ago)."""
        now = time.monotonic()
        with self._lock:
            value = self._value
            fresh = value is not None and now - self._loaded_at < self._ttl_s
        known = value is not None and (require_tenant is None or require_tenant in value.limits)
        if value is not None and fresh and known:
            return value
        value = load_catalog(session)
        with self._lock:
            self._value, self._loaded_at = value, now
        return value


def load_catalog(session: Session) -> Catalog:
    nodes = NodeRow.__table__.c
    columns = (nodes.gpu_type, nodes.gpus, nodes.cpu_milli, nodes.mem_mib, nodes.state)
    kinds: Counter[tuple[str, int, int, int, str, str]] = Counter(
        (r[0], r[1], r[2], r[3], r[4], r[5])
        for r in session.execute(select(*columns, nodes.vendor))
    )
    limits: dict[str, dict[str, int | None]] = {
        name: {} for name in session.scalars(select(TenantRow.name))
    }
    for q in session.scalars(select(QuotaRow)):
        limits.setdefault(q.tenant, {})[q.gpu_type] = q.limit_milli
    facts = tuple(NodeFacts(*kind, n) for kind, n in sorted(kinds.items()))
    return Catalog(nodes=facts, limits=limits)
