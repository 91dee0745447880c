"""Token rates per model on the rate card and the tokens charged per key, model and
minute.

Revision ID: 0011_token_rates
Revises: 0010_gateway
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_token_rates"
down_revision = "0010_gateway"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credit_token_rates",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("effective_at", sa.Float(), nullable=False),
        sa.Column("prompt_micro_per_m", sa.BigInteger(), nullable=False),
        sa.Column("completion_micro_per_m", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("model", "effective_at"),
    )
    op.create_table(
        "credit_token_minutes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("rate_line", sa.String(160), nullable=False),
        sa.Column("base_prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("base_completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("base_amount_micro", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("key_id", "model", "minute", name="uq_credit_token_minutes_key"),
    )
    op.create_index(
        "ix_credit_token_minutes_tenant_minute", "credit_token_minutes", ["tenant", "minute"]
    )


def downgrade() -> None:
    op.drop_index("ix_credit_token_minutes_tenant_minute", table_name="credit_token_minutes")
    op.drop_table("credit_token_minutes")
    op.drop_table("credit_token_rates")
