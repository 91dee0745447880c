"""The vendor of every node's accelerators (``nvidia``, ``huawei``, ``amd``,
``cambricon``), which decides the device contract its replicas get. Nodes registered
before are given their type's vendor from the table of known models.

Revision ID: 0007_vendors
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from mosu.core.accelerators import vendor_of

revision = "0007_vendors"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "nodes",
        sa.Column("vendor", sa.String(16), nullable=False, server_default="nvidia"),
    )
    nodes = sa.table("nodes", sa.column("name", sa.String), sa.column("gpu_type", sa.String))
    vendor = sa.table("nodes", sa.column("name", sa.String), sa.column("vendor", sa.String))
    bind = op.get_bind()
    for name, gpu_type in bind.execute(sa.select(nodes.c.name, nodes.c.gpu_type)).all():
        found = vendor_of(gpu_type).value
        if found != "nvidia":
            bind.execute(vendor.update().where(vendor.c.name == name).values(vendor=found))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("vendor")
