"""Checkpoints a job reports and asks for: its checkpoint signal and how long a
preemption waits for the checkpoint, its last reported checkpoint, and when the active
attempt was asked for one.

Revision ID: 0014_job_checkpoints
Revises: 0013_scheduler_state
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_job_checkpoints"
down_revision = "0013_scheduler_state"
branch_labels = None
depends_on = None

_COLUMNS = (
    "checkpoint_signal",
    "checkpoint_grace_s",
    "last_checkpoint_at",
    "checkpoint_requested_at",
)


def upgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.add_column(sa.Column("checkpoint_signal", sa.String(16), nullable=True))
        batch.add_column(sa.Column("checkpoint_grace_s", sa.Float, nullable=True))
        batch.add_column(sa.Column("last_checkpoint_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("checkpoint_requested_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
