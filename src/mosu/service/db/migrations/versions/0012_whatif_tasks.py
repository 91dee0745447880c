"""What-if tasks in the store: seen by every API worker, resumed after a restart.

Revision ID: 0012_whatif_tasks
Revises: 0011_token_rates
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_whatif_tasks"
down_revision = "0011_token_rates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "whatif_tasks",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(32), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("plot_png", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_whatif_tasks_state", "whatif_tasks", ["state", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_whatif_tasks_state", table_name="whatif_tasks")
    op.drop_table("whatif_tasks")
