"""Model services and their replicas, gateway keys, metered tokens and the showcase's
audit record.

Revision ID: 0010_gateway
Revises: 0009_eta
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_gateway"
down_revision = "0009_eta"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_services",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False, unique=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("min_replicas", sa.Integer(), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("scaled_at", sa.Float(), nullable=True),
        sa.Column("inflight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("waiting", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("load_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("tenant", "name", name="uq_model_services_tenant_name"),
    )
    op.create_table(
        "service_replicas",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.Integer(), sa.ForeignKey("model_services.id"), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("ready_at", sa.Float(), nullable=True),
        sa.Column("drain_at", sa.Float(), nullable=True),
        sa.Column("inflight", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_service_replicas_service", "service_replicas", ["service_id", "state"])
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("showcase", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "token_usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("gateway_keys.id"), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("minute", "key_id", "model", name="uq_token_usage_bucket"),
    )
    op.create_table(
        "showcase_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("request_bytes", sa.Integer(), nullable=False),
        sa.Column("response_bytes", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
    )
    op.create_index("ix_showcase_audit_at", "showcase_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_showcase_audit_at", table_name="showcase_audit")
    op.drop_table("showcase_audit")
    op.drop_table("token_usage")
    op.drop_table("gateway_keys")
    op.drop_index("ix_service_replicas_service", table_name="service_replicas")
    op.drop_table("service_replicas")
    op.drop_table("model_services")
