"""The migrations are the schema: upgrade, compare with the ORM rows, downgrade, upgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from mosu.service.db import gateway_rows  # noqa: F401 - its tables are in the metadata
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


def test_the_cohort_migration_keeps_every_tenant_and_its_quotas(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tenants (name, weight, created_at) VALUES ('acme', 2, 0)")
            )
            conn.execute(
                text(
                    "INSERT INTO quotas (tenant, gpu_type, guaranteed_milli) "
                    "VALUES ('acme', 'H800', 4000)"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name, cohort FROM tenants")).all() == [("acme", None)]
            conn.execute(text("UPDATE tenants SET cohort = 'lab-a'"))
        # Down and up again: the column goes and comes back empty; nothing else is lost
        # (a copied-and-dropped table would have cascaded to the quotas on SQLite).
        downgrade(engine, "0001")
        assert "cohort" not in {c["name"] for c in inspect(engine).get_columns("tenants")}
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT name, weight, cohort FROM tenants")).all() == [
                ("acme", 2.0, None)
            ]
            assert conn.execute(text("SELECT tenant, guaranteed_milli FROM quotas")).all() == [
                ("acme", 4000)
            ]
    finally:
        engine.dispose()


def test_the_vendor_migration_gives_every_node_its_type_s_vendor(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0006")
        with engine.begin() as conn:
            for name, gpu_type in [
                ("a", "H800"),
                ("b", "Ascend910B"),
                ("c", "MI300X"),
                ("d", "G2"),
            ]:
                conn.execute(
                    text(
                        "INSERT INTO nodes (name, gpu_type, gpus, cpu_milli, mem_mib, "
                        "gpu_mem_mib, zone, rack, state, created_at) "
                        "VALUES (:n, :t, 8, 0, 0, 0, 'z', 'r', 'ready', 0)"
                    ),
                    {"n": name, "t": gpu_type},
                )
        upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT name, vendor FROM nodes ORDER BY name")).all()
        assert rows == [("a", "nvidia"), ("b", "huawei"), ("c", "amd"), ("d", "nvidia")]
        downgrade(engine, "0006")
        assert "vendor" not in {c["name"] for c in inspect(engine).get_columns("nodes")}
    finally:
        engine.dispose()
