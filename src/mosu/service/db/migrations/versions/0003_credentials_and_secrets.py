"""Tokens become named credentials (expiry, last use, revocation); submissions get an
idempotency key; tenants get encrypted secrets; event ids become 64-bit.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# As in 0002: columns are added and dropped in place, never by copying a table (SQLite's
# foreign keys would cascade a dropped copy's rows).


def upgrade() -> None:
    with op.batch_alter_table("tokens", recreate="never") as batch:
        batch.add_column(sa.Column("name", sa.String(64), nullable=False, server_default="default"))
        batch.add_column(sa.Column("expires_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.Float, nullable=True))
    # Every token that exists already gets a name of its own.
    op.execute("UPDATE tokens SET name = 'operator' WHERE tenant IS NULL")
    op.execute(
        "UPDATE tokens SET name = 'token-' || CAST(id AS VARCHAR(16)) WHERE tenant IS NOT NULL"
    )

    op.create_table(
        "submission_keys",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_submission_keys_created", "submission_keys", ["created_at"])
    op.create_table(
        "secrets",
        sa.Column(
            "tenant",
            sa.String(64),
            sa.ForeignKey("tenants.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A serial column's sequence is 32-bit too; both must grow. (SQLite's rowid is
        # 64-bit already.)
        op.alter_column("events", "id", type_=sa.BigInteger, existing_type=sa.Integer)
        op.execute("ALTER SEQUENCE events_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE events_id_seq AS INTEGER")
        op.alter_column("events", "id", type_=sa.Integer, existing_type=sa.BigInteger)
    op.drop_table("meta")
    op.drop_table("secrets")
    op.drop_index("ix_submission_keys_created", table_name="submission_keys")
    op.drop_table("submission_keys")
    with op.batch_alter_table("tokens", recreate="never") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("name")
