"""The change log the scheduler keeps its state from: one row per written job,
allocation, node, tenant or quota, added by triggers in the writing transaction.

Keys: ``job`` (a job id: the job row or one of its allocations), ``node`` (a node's
name), ``tenant`` (a tenant's name: the tenant row or one of its quotas). An update
logs the old key and, if the key changed, the new one too. An update of a job's
pending reason and start estimates only (the scheduler's own advice, written without
a version bump) is not logged: the scheduler keeps what it wrote. A column added to
``jobs`` later is logged through the ``version`` its updates set. On PostgreSQL each row
also carries the writing transaction's id (``xid``); on SQLite the id order is the
commit order.

A later migration that rebuilds one of these tables on SQLite (``batch_alter_table``
copies it) drops its triggers and must create them again; the scheduler refuses to
trust a store without all of them (it then reloads everything each cycle).

Revision ID: 0015_change_log
Revises: 0014_job_checkpoints
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_change_log"
down_revision = "0014_job_checkpoints"
branch_labels = None
depends_on = None

JOB_ADVICE = ("pending_reason", "pending_message", "estimated_start", "estimated_start_late")
"""What the scheduler alone writes, without bumping the version: why a job waits. It
keeps what it wrote itself, so an update of these columns only is not logged."""
JOB_COLUMNS = (
    "id",
    "tenant",
    "name",
    "kind",
    "state",
    "version",
    "priority",
    "replicas",
    "gpus",
    "gpu_milli",
    "gpu_types",
    "cpu_milli",
    "mem_mib",
    "topology",
    "estimate_s",
    "max_runtime_s",
    "checkpoint_every_s",
    "checkpoint_signal",
    "checkpoint_grace_s",
    "last_checkpoint_at",
    "checkpoint_requested_at",
    "spec",
    "submitted_at",
    "started_at",
    "finished_at",
    "attempts",
    "attained_gpu_s",
    "exit_code",
    "message",
    "stop_reason",
    "stop_signalled",
)
"""The job columns whose update is logged: every one but ``JOB_ADVICE`` (an update
through the ORM always sets ``version`` too)."""
WATCHED = (
    # table, kind, key column
    ("jobs", "job", "id"),
    ("allocations", "job", "job_id"),
    ("nodes", "node", "name"),
    ("tenants", "tenant", "name"),
    ("quotas", "tenant", "tenant"),
)


def _updated(table: str) -> str:
    """The update a trigger of ``table`` fires on."""
    return f"UPDATE OF {', '.join(JOB_COLUMNS)}" if table == "jobs" else "UPDATE"


def _sqlite_triggers(table: str, kind: str, col: str) -> list[str]:
    insert = "INSERT INTO change_log (kind, key) VALUES ('{kind}', CAST({ref}.{col} AS TEXT));"
    return [
        f"CREATE TRIGGER change_log_{table}_insert AFTER INSERT ON {table} BEGIN "
        + insert.format(kind=kind, ref="NEW", col=col)
        + " END",
        f"CREATE TRIGGER change_log_{table}_update AFTER {_updated(table)} ON {table} BEGIN "
        + insert.format(kind=kind, ref="OLD", col=col)
        + f" INSERT INTO change_log (kind, key) SELECT '{kind}', CAST(NEW.{col} AS TEXT)"
        f" WHERE NEW.{col} IS NOT OLD.{col}; END",
        f"CREATE TRIGGER change_log_{table}_delete AFTER DELETE ON {table} BEGIN "
        + insert.format(kind=kind, ref="OLD", col=col)
        + " END",
    ]


def _postgres_triggers(table: str, kind: str, col: str) -> list[str]:
    log = (
        "INSERT INTO change_log (xid, kind, key) "
        "VALUES (pg_current_xact_id()::text::bigint, '{kind}', {ref}.{col}::text);"
    )
    return [
        f"""CREATE FUNCTION change_log_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {log.format(kind=kind, ref="OLD", col=col)}
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{col} IS DISTINCT FROM OLD.{col}) THEN
        {log.format(kind=kind, ref="NEW", col=col)}
    END IF;
    RETURN NULL;
END
$$""",
        f"CREATE TRIGGER change_log_{table} AFTER INSERT OR {_updated(table)} OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION change_log_{table}()",
    ]


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("xid", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_change_log_xid", "change_log", ["xid"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, kind, col in WATCHED:
        statements = (_postgres_triggers if postgres else _sqlite_triggers)(table, kind, col)
        for statement in statements:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, _kind, _col in WATCHED:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS change_log_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS change_log_{table}()")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS change_log_{table}_{event}")
    op.drop_index("ix_change_log_xid", table_name="change_log")
    op.drop_table("change_log")
