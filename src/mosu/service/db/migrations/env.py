"""Alembic environment: the engine is handed in by ``mosu.service.db.session``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from mosu.service.db import gateway_rows  # noqa: F401 - its tables are in the metadata
from mosu.service.db.rows import Base

MIGRATION_LOCK = 0x6D6F7375
"""PostgreSQL advisory lock key ("mosu") held while migrating."""

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Servers starting at once against one database migrate one after the other: the
        # second waits here, then finds the schema current. (DDL is transactional there.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=Base.metadata)
    context.run_migrations()
