"""Replicas run under supervisors that outlive the server: an allocation records where
its supervisor keeps its state (``run_dir``, written before the start) and how to find
it again (``supervisor``); a node records the sandbox its replicas run in.

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Columns are added and dropped in place (as 0002 does): recreating a table would drop
# it under SQLite's foreign keys.


def upgrade() -> None:
    with op.batch_alter_table("allocations", recreate="never") as batch:
        batch.add_column(sa.Column("run_dir", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("supervisor", sa.Text(), nullable=True))
    with op.batch_alter_table("nodes", recreate="never") as batch:
        batch.add_column(sa.Column("sandbox", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", recreate="never") as batch:
        batch.drop_column("sandbox")
    with op.batch_alter_table("allocations", recreate="never") as batch:
        batch.drop_column("supervisor")
        batch.drop_column("run_dir")
