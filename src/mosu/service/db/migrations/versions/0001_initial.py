"""Initial schema: tenants, quotas, nodes, jobs, allocations, events, usage, tokens.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "quotas",
        sa.Column(
            "tenant",
            sa.String(64),
            sa.ForeignKey("tenants.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("gpu_type", sa.String(64), primary_key=True),
        sa.Column("guaranteed_milli", sa.Integer, nullable=False),
        sa.Column("limit_milli", sa.Integer, nullable=True),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("cpu_milli", sa.Integer, nullable=False),
        sa.Column("mem_mib", sa.Integer, nullable=False),
        sa.Column("gpu_mem_mib", sa.Integer, nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("rack", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("gpu_milli", sa.Integer, nullable=False),
        sa.Column("gpu_types", sa.String(255), nullable=False),
        sa.Column("cpu_milli", sa.Integer, nullable=False),
        sa.Column("mem_mib", sa.Integer, nullable=False),
        sa.Column("topology", sa.String(16), nullable=False),
        sa.Column("estimate_s", sa.Float, nullable=True),
        sa.Column("max_runtime_s", sa.Float, nullable=True),
        sa.Column("checkpoint_every_s", sa.Float, nullable=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("attained_gpu_s", sa.Float, nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("stop_reason", sa.String(32), nullable=True),
        sa.Column("stop_signalled", sa.Boolean, nullable=False),
        sa.Column("pending_reason", sa.String(32), nullable=True),
        sa.Column("pending_message", sa.Text, nullable=True),
        sa.Column("estimated_start", sa.Float, nullable=True),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant", "state"])
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("replica", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("node", sa.String(64), sa.ForeignKey("nodes.name"), nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("gpu_indices", sa.String(255), nullable=False),
        sa.Column("gpu_milli", sa.Integer, nullable=False),
        sa.Column("cpu_milli", sa.Integer, nullable=False),
        sa.Column("mem_mib", sa.Integer, nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("allocated_at", sa.Float, nullable=False),
        sa.Column("released_at", sa.Float, nullable=True),
    )
    op.create_index("ix_allocations_active", "allocations", ["released_at"])
    op.create_index("ix_allocations_job", "allocations", ["job_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_events_job", "events", ["job_id"])
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("gpu_seconds", sa.Float, nullable=False),
        sa.UniqueConstraint("tenant", "gpu_type", "day"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("tokens", "usage", "events", "allocations", "jobs", "nodes", "quotas"):
        op.drop_table(table)
    op.drop_table("tenants")
