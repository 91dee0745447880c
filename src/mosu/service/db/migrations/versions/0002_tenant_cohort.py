"""Tenants get an optional cohort: tenants of one cohort lend idle guaranteed GPUs to
each other; NULL is the default cohort.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# Batch mode, but never by copying the table: SQLite (3.35 and later) adds and drops a
# plain column in place, as PostgreSQL does. Recreating ``tenants`` would drop the table
# under SQLite's foreign keys, and that cascades to (deletes) every tenant's quotas.


def upgrade() -> None:
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.add_column(sa.Column("cohort", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.drop_column("cohort")
