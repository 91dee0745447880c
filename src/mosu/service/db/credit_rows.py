"""Rows of the credit ledger: grants, the rate card, metered usage intervals, ledger
entries, each tenant's out-of-credit policy and the alerts already sent. Amounts are
integer micro-credits; interval bounds integer milliseconds (exact keys)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mosu.service.db.rows import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class CreditGrantRow(Base):
    __tablename__ = "credit_grants"
    __table_args__ = (Index("ix_credit_grants_tenant", "tenant"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    effective_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)


class CreditRateRow(Base):
    """A rate in force from ``effective_at`` until a later row for the same resource."""

    __tablename__ = "credit_rates"
    __table_args__ = (UniqueConstraint("resource", "effective_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    resource: Mapped[str] = mapped_column(String(64))
    effective_at: Mapped[float] = mapped_column(Float)
    micro_per_hour: Mapped[int] = mapped_column(BigInteger)
    borrowed_micro_per_hour: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class CreditIntervalRow(Base):
    """One metered stretch of one replica's run. ``(allocation_id, start_ms)`` is unique:
    a stretch is charged once, whichever server meters it and however often it is
    retried; the next stretch begins where the last one ended."""

    __tablename__ = "credit_intervals"
    __table_args__ = (
        UniqueConstraint("allocation_id", "start_ms", name="uq_credit_intervals_key"),
        Index("ix_credit_intervals_tenant_end", "tenant", "end_ms"),
        Index("ix_credit_intervals_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    allocation_id: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int] = mapped_column(Integer)
    tenant: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(64))
    borrowed: Mapped[bool] = mapped_column(Boolean, default=False)
    """Above the tenant's guarantee when the replica was first metered (kept for its run)."""
    gpu_milli: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0)
    mem_mib: Mapped[int] = mapped_column(Integer, default=0)
    run_start_ms: Mapped[int] = mapped_column(BigInteger)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    """The replica's run ended here (nothing follows)."""


class CreditEntryRow(Base):
    """The append-only ledger: a balance is the sum of a tenant's ``amount_micro``
    (grants and refunds positive; charges and expiries negative)."""

    __tablename__ = "credit_entries"
    __table_args__ = (
        Index("ix_credit_entries_tenant_at", "tenant", "at"),
        Index("ix_credit_entries_interval", "allocation_id", "interval_start_ms"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """grant, charge, refund, expiry or adjustment."""
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column(Float)
    grant_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The grant it adds to or draws from (None: drawn from no grant, an overdraft)."""
    allocation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    interval_start_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """A charge names the interval it pays for by its key (allocation, start); a refund
    names the allocation whose work it gives back."""
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key: Mapped[str | None] = mapped_column(String(96), nullable=True, unique=True)
    """Once-only entries (a refund per allocation, an expiry per grant) are keyed."""
    note: Mapped[str] = mapped_column(Text, default="")


class CreditPolicyRow(Base):
    __tablename__ = "credit_policies"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_exhausted: Mapped[str] = mapped_column(String(16), default="hold")


class CreditAlertRow(Base):
    """A threshold alert sent for a granted amount: sent once per (threshold, amount)."""

    __tablename__ = "credit_alerts"
    __table_args__ = (UniqueConstraint("tenant", "threshold", "granted_micro"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[int] = mapped_column(Integer)
    """Percent of the granted amount."""
    granted_micro: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column(Float)


class CreditTokenRateRow(Base):
    """A model's token prices (micro-credits per million tokens) from ``effective_at`` on,
    until a later row for the same model; model ``*`` for any other (migration
    ``0011_token_rates``)."""

    __tablename__ = "credit_token_rates"
    __table_args__ = (UniqueConstraint("model", "effective_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    effective_at: Mapped[float] = mapped_column(Float)
    prompt_micro_per_m: Mapped[int] = mapped_column(BigInteger)
    completion_micro_per_m: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)


class CreditTokenMinuteRow(Base):
    """The tokens of one (key, model, minute) charged so far and what they were charged.
    ``(key_id, model, minute)`` is unique, and each flush charges only what its new totals
    cost beyond ``amount_micro``: a batch charged twice, retried or metered by two gateways
    at once is charged once (the second insert of a minute fails its transaction)."""

    __tablename__ = "credit_token_minutes"
    __table_args__ = (
        UniqueConstraint("key_id", "model", "minute", name="uq_credit_token_minutes_key"),
        Index("ix_credit_token_minutes_tenant_minute", "tenant", "minute"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    minute: Mapped[int] = mapped_column(Integer)
    tenant: Mapped[str] = mapped_column(String(64))
    """The tenant that owns the model: the one charged."""
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_line: Mapped[str] = mapped_column(String(160), default="")
    """The token rate the tokens since ``base_*`` are priced at (``core.credits_tokens``)."""
    base_prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    base_completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    base_amount_micro: Mapped[int] = mapped_column(BigInteger, default=0)
