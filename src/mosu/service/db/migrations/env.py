"""Alembic environment: the engine is handed in by ``mosu.service.db.session``."""

from __future__ import annotations

from alembic import context

from mosu.service.db.rows import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    context.run_migrations()
