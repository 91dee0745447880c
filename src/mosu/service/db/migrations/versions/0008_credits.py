"""Compute credits: grants, the rate card, metered intervals, the ledger, out-of-credit
policies and threshold alerts.

Revision ID: 0008_credits
Revises: 0007_vendors
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_credits"
down_revision = "0007_vendors"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_credit_grants_tenant", "credit_grants", ["tenant"])
    op.create_table(
        "credit_rates",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("effective_at", sa.Float(), nullable=False),
        sa.Column("micro_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("borrowed_micro_per_hour", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("resource", "effective_at"),
    )
    op.create_table(
        "credit_intervals",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("borrowed", sa.Boolean(), nullable=False),
        sa.Column("gpu_milli", sa.Integer(), nullable=False),
        sa.Column("cpu_milli", sa.Integer(), nullable=False),
        sa.Column("mem_mib", sa.Integer(), nullable=False),
        sa.Column("run_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("allocation_id", "start_ms", name="uq_credit_intervals_key"),
    )
    op.create_index("ix_credit_intervals_tenant_end", "credit_intervals", ["tenant", "end_ms"])
    op.create_index("ix_credit_intervals_job", "credit_intervals", ["job_id"])
    op.create_table(
        "credit_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("grant_id", sa.BigInteger(), nullable=True),
        sa.Column("allocation_id", sa.Integer(), nullable=True),
        sa.Column("interval_start_ms", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(96), nullable=True, unique=True),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_credit_entries_tenant_at", "credit_entries", ["tenant", "at"])
    op.create_index(
        "ix_credit_entries_interval", "credit_entries", ["allocation_id", "interval_start_ms"]
    )
    op.create_table(
        "credit_policies",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("on_exhausted", sa.String(16), nullable=False),
    )
    op.create_table(
        "credit_alerts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("granted_micro", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.UniqueConstraint("tenant", "threshold", "granted_micro"),
    )


def downgrade() -> None:
    op.drop_table("credit_alerts")
    op.drop_table("credit_policies")
    op.drop_index("ix_credit_entries_interval", table_name="credit_entries")
    op.drop_index("ix_credit_entries_tenant_at", table_name="credit_entries")
    op.drop_table("credit_entries")
    op.drop_index("ix_credit_intervals_job", table_name="credit_intervals")
    op.drop_index("ix_credit_intervals_tenant_end", table_name="credit_intervals")
    op.drop_table("credit_intervals")
    op.drop_table("credit_rates")
    op.drop_index("ix_credit_grants_tenant", table_name="credit_grants")
    op.drop_table("credit_grants")
