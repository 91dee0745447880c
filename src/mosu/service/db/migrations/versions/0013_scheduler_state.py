"""What the scheduler process publishes for the API processes (queue order, reserved
credits, the leader's heartbeat).

Revision ID: 0013_scheduler_state
Revises: 0012_whatif_tasks
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_scheduler_state"
down_revision = "0012_whatif_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_state")
