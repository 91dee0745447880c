"""On PostgreSQL the change log takes a table's inserted rows once per statement, from
the statement's transition table, instead of running a trigger function per row: a
submission batch inserts many jobs in one statement, and the per-row call was a good
part of each row's cost. Updates and deletes stay per row (an update logs the old key
and maybe the new one, and ``jobs`` fires only on its watched columns, which a
transition table cannot be declared with).

The log's rows are the same as before, written in the same transaction by the same
statement, so readers see no difference. SQLite is unchanged (its triggers are per row
only). A later migration that changes the row trigger of a PostgreSQL table (a column
added to ``jobs``) keeps inserts out of it.

Revision ID: 0016_change_log_inserts
Revises: 0015_change_log
"""

import importlib

from alembic import op

revision = "0016_change_log_inserts"
down_revision = "0015_change_log"
branch_labels = None
depends_on = None

_BEFORE = importlib.import_module("mosu.service.db.migrations.versions.0015_change_log")


def _statement_trigger(table: str, kind: str, col: str) -> list[str]:
    return [
        f"""CREATE FUNCTION change_log_{table}_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_log (xid, kind, key)
    SELECT pg_current_xact_id()::text::bigint, '{kind}', inserted.{col}::text FROM inserted;
    RETURN NULL;
END
$$""",
        f"CREATE TRIGGER change_log_{table}_insert AFTER INSERT ON {table} "
        "REFERENCING NEW TABLE AS inserted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION change_log_{table}_insert()",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, kind, col in _BEFORE.WATCHED:
        # The row function stays as it is: its insert branch is just no longer reached.
        op.execute(f"DROP TRIGGER change_log_{table} ON {table}")
        op.execute(
            f"CREATE TRIGGER change_log_{table} AFTER {_BEFORE._updated(table)} OR DELETE "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION change_log_{table}()"
        )
        for statement in _statement_trigger(table, kind, col):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _kind, _col in _BEFORE.WATCHED:
        op.execute(f"DROP TRIGGER change_log_{table}_insert ON {table}")
        op.execute(f"DROP FUNCTION change_log_{table}_insert()")
        op.execute(f"DROP TRIGGER change_log_{table} ON {table}")
        op.execute(
            f"CREATE TRIGGER change_log_{table} AFTER INSERT OR {_BEFORE._updated(table)} "
            f"OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION change_log_{table}()"
        )
