"""The migrations are the schema: upgrade, compare with the ORM rows, downgrade, upgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from mosu.service.db.rows import Base
from mosu.service.db.session import alembic_config, downgrade, make_engine, upgrade


def test_migrations_round_trip_and_match_the_rows(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        assert tables == {*Base.metadata.tables, "alembic_version"}
        # Raises if the rows and the migrations disagree on any table, column or index.
        command.check(alembic_config(engine))
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()
