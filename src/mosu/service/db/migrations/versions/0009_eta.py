"""A pending job's late bound beside its likely start.

Revision ID: 0009_eta
Revises: 0008_credits
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_eta"
down_revision = "0008_credits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.add_column(sa.Column("estimated_start_late", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("estimated_start_late")
