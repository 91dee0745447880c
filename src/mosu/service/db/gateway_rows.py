"""Rows of model services, their replicas, gateway keys, metered tokens and the
showcase's audit record (migration ``0010_gateway``)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mosu.service.db.rows import Base


class ModelServiceRow(Base):
    __tablename__ = "model_services"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_model_services_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128), unique=True)
    """The name clients call; one service per model name across the cluster."""
    spec: Mapped[dict] = mapped_column(JSON)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    """Replicas wanted now: set by ``mosu service scale`` or the autoscaler."""
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    """Shown on the showcase only when public and approved by the operator."""
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    scaled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    inflight: Mapped[int] = mapped_column(Integer, default=0)
    """Requests the gateway has open to the service (sent, or waiting for a replica)."""
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    """Of those, requests waiting because no replica is ready."""
    load_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ServiceReplicaRow(Base):
    __tablename__ = "service_replicas"
    __table_args__ = (Index("ix_service_replicas_service", "service_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(Integer, ForeignKey("model_services.id"))
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id"))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    """starting → ready → draining → gone (a ready replica whose job stops is starting
    again until its readiness check passes)."""
    created_at: Mapped[float] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    drain_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    inflight: Mapped[int] = mapped_column(Integer, default=0)


class GatewayKeyRow(Base):
    __tablename__ = "gateway_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str | None] = mapped_column(String(64), ForeignKey("tenants.name"))
    """None for the operator's keys (the showcase key)."""
    name: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    models: Mapped[list] = mapped_column(JSON)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    showcase: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TokenUsageRow(Base):
    __tablename__ = "token_usage"
    __table_args__ = (UniqueConstraint("minute", "key_id", "model", name="uq_token_usage_bucket"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    minute: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer, ForeignKey("gateway_keys.id"))
    model: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(64))
    """The tenant that owns the model: the one a per-token rate is charged to."""
    requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)


class ShowcaseAuditRow(Base):
    __tablename__ = "showcase_audit"
    __table_args__ = (Index("ix_showcase_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(Integer)
    request_bytes: Mapped[int] = mapped_column(Integer)
    response_bytes: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
