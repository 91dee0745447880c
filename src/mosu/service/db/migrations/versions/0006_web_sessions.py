"""Dashboard sign-in sessions, and indexes on event times and on the state an event
leads to, for the dashboard's history and its recent preemptions and failures.

Revision ID: 0006
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("sealed_token", sa.LargeBinary(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_web_sessions_expires", "web_sessions", ["expires_at"])
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_to_state", "events", ["to_state", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_to_state", table_name="events")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_index("ix_web_sessions_expires", table_name="web_sessions")
    op.drop_table("web_sessions")
