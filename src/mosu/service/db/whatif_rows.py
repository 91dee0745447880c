"""What-if tasks (migration ``0012_whatif_tasks``): kept in the store so that every API
worker sees every task and a task accepted before a restart still runs after it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mosu.service.db.rows import Base


class WhatIfTaskRow(Base):
    __tablename__ = "whatif_tasks"
    __table_args__ = (Index("ix_whatif_tasks_state", "state", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What a server needs to plan the task again: the request's body with its window
    pinned, the profile and minimum runtime in force when it was accepted."""
    changes: Mapped[list[str]] = mapped_column(JSON)
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(32), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The server process running (or about to run) the task."""
    heartbeat_at: Mapped[float] = mapped_column(Float)
    """Last sign of life of its runner; a stale one lets another server take it over."""
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    plot_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
