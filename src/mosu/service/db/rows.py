"""SQLAlchemy ``*Row`` classes; API models live in ``mosu.core.api`` and are converted
explicitly in ``convert.py``. Times are stored as UTC epoch seconds (float)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mosu.core.reasons import PendingReason, StopReason

E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E], Generic[E]):
    """A ``StrEnum`` stored as its value in a ``VARCHAR``: the schema stays plain text
    (no database enum type to migrate when a reason is added) and the row holds the
    enum, so a reason is typed from the store to the API."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[float] = mapped_column(Float)
    cohort: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Tenants of one cohort lend idle guaranteed GPUs to each other; ``None`` is the
    default cohort of every tenant without one."""


class QuotaRow(Base):
    __tablename__ = "quotas"

    tenant: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.name", ondelete="CASCADE"), primary_key=True
    )
    gpu_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    guaranteed_milli: Mapped[int] = mapped_column(Integer, default=0)
    limit_milli: Mapped[int | None] = mapped_column(Integer, nullable=True)


class NodeRow(Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(64))
    vendor: Mapped[str] = mapped_column(String(16), default="nvidia", server_default="nvidia")
    """Who makes the GPUs (``nvidia``, ``huawei``, ``amd``, ``cambricon``): which variable
    shows a replica its devices (``core.accelerators``)."""
    gpus: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0)
    mem_mib: Mapped[int] = mapped_column(Integer, default=0)
    gpu_mem_mib: Mapped[int] = mapped_column(Integer, default=0)
    zone: Mapped[str] = mapped_column(String(64), default="zone-0")
    rack: Mapped[str] = mapped_column(String(64), default="rack-0")
    state: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[float] = mapped_column(Float)
    sandbox: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """How replicas run there (``users``, ``bwrap``, ``none``), as its executor reports it."""


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_tenant_state", "tenant", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by every update (optimistic locking): a write based on a stale read fails,
    so the scheduler applies a decision only to the job version its snapshot saw."""
    priority: Mapped[int] = mapped_column(Integer, default=0)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    gpus: Mapped[int] = mapped_column(Integer, default=1)
    """GPU devices per replica."""
    gpu_milli: Mapped[int] = mapped_column(Integer, default=1000)
    """Share of each device, in thousandths."""
    gpu_types: Mapped[str] = mapped_column(String(255), default="")
    """Comma-separated; empty means any type."""
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0)
    mem_mib: Mapped[int] = mapped_column(Integer, default=0)
    topology: Mapped[str] = mapped_column(String(16), default="none")
    estimate_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_runtime_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    checkpoint_every_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    checkpoint_signal: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The signal that asks the job for a checkpoint before a preemption stops it."""
    checkpoint_grace_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    """How long such a stop waits for the checkpoint."""
    last_checkpoint_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The job's latest reported checkpoint (kept across attempts; the engine reads it
    only when it falls within the current attempt)."""
    checkpoint_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """When a preemption asked the active attempt for a checkpoint; None otherwise."""
    spec: Mapped[dict] = mapped_column(JSON)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attained_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    stop_reason: Mapped[StopReason | None] = mapped_column(EnumText(StopReason), nullable=True)
    """Why the active job is being stopped; None otherwise."""
    stop_signalled: Mapped[bool] = mapped_column(Boolean, default=False)
    pending_reason: Mapped[PendingReason | None] = mapped_column(
        EnumText(PendingReason), nullable=True
    )
    pending_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    estimated_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Likely start of a pending job (None: unknown)."""
    estimated_start_late: Mapped[float | None] = mapped_column(Float, nullable=True)
    """A bound it starts before nine times in ten."""

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class AllocationRow(Base):
    """One replica's place; kept after release (``released_at``) as usage history."""

    __tablename__ = "allocations"
    __table_args__ = (
        Index("ix_allocations_active", "released_at"),
        Index("ix_allocations_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    replica: Mapped[int] = mapped_column(Integer)
    tenant: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64), ForeignKey("nodes.name"))
    gpu_type: Mapped[str] = mapped_column(String(64))
    gpu_indices: Mapped[str] = mapped_column(String(255), default="")
    gpu_milli: Mapped[int] = mapped_column(Integer, default=1000)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0)
    mem_mib: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocated_at: Mapped[float] = mapped_column(Float)
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    run_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    """Where the replica's supervisor keeps its lock and exit record; set with the row,
    before the start, so a server that dies mid-start leaves it findable."""
    supervisor: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The executor's handle of the replica's supervisor (JSON for local processes, the
    runner actor's name on Ray)."""


class EventRow(Base):
    """Append-only history; a job's current state is its last event's ``to_state``."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_job", "job_id"),
        # The dashboard's history reads a time window of events (queue depth over time)
        # and the latest events into a state (recent preemptions, failures).
        Index("ix_events_at", "at"),
        Index("ix_events_to_state", "to_state", "id"),
    )

    # 64-bit: the history only grows. SQLite's INTEGER PRIMARY KEY is 64-bit already (and
    # is the auto-incrementing rowid only when spelled INTEGER).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[float] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class UsageRow(Base):
    """GPU-seconds a tenant held per GPU type per UTC day."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("tenant", "gpu_type", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class TokenRow(Base):
    """An API token: only its SHA-256 is kept. A revoked token stays, as history."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """None for the operator."""
    created_at: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(64), server_default="default")
    """Unique among the live tokens of one tenant (or of the operator)."""
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Written at most once a minute per server, not on every request."""
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SubmissionKeyRow(Base):
    """An ``Idempotency-Key`` a tenant submitted with, and the job it created."""

    __tablename__ = "submission_keys"
    __table_args__ = (Index("ix_submission_keys_created", "created_at"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the submitted spec: the same key with another spec is refused."""
    job_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


class SecretRow(Base):
    """A tenant's named secret, encrypted (AES-GCM, bound to its tenant and name)."""

    __tablename__ = "secrets"

    tenant: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.name", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    """Which key encrypted it (the first hex digits of the key's SHA-256)."""
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    """Nonce followed by the AES-GCM ciphertext and tag."""
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class MetaRow(Base):
    """Facts about the store itself, e.g. which key encrypts its secrets."""

    __tablename__ = "meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class WebSessionRow(Base):
    """A dashboard sign-in. The browser holds the session key; the row holds its hash and
    the token it signed in with, sealed under that key, so neither half alone is a
    credential and signing out (deleting the row) ends the session on every server."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 of the session key (hex)."""
    sealed_token: Mapped[bytes] = mapped_column(LargeBinary)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Who signed in (None: the operator), for listing sessions; access is decided by the
    sealed token on every request."""
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class SchedulerStateRow(Base):
    """What the scheduler process publishes for the API processes: the last cycle's queue
    order, the credits running jobs reserve, the leader's heartbeat. One row per name;
    ``version`` grows with every write, so a reader re-reads ``value`` only on change."""

    __tablename__ = "scheduler_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[str] = mapped_column(Text)
    """JSON."""
    updated_at: Mapped[float] = mapped_column(Float)


class ChangeRow(Base):
    """One write the scheduler's state follows: a job, its allocations (``job``, keyed by
    job id), a node (``node``), a tenant or its quotas (``tenant``). Written by triggers
    on those tables (migration ``0015_change_log``) in the writing transaction, so no
    write path can miss it; read and pruned by the scheduler (``db/change_log.py``).

    On SQLite ``id`` follows commit order (one writer; AUTOINCREMENT never reuses or skips
    an id of a committed row). On PostgreSQL it does not, and ``xid`` is the writing
    transaction's id, read against the reader's snapshot instead."""

    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_xid", "xid"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    xid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(64))


# The credit ledger's rows live in their own module; importing it here puts them in
# ``Base.metadata`` wherever the rows are known (migrations, their check).
from mosu.service.db import credit_rows as _credit_rows  # noqa: E402, F401
from mosu.service.db import whatif_rows as _whatif_rows  # noqa: E402, F401
