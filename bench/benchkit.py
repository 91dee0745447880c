"""What several benchmarks share: a free local port and a throwaway PostgreSQL database.

Benchmarks run as scripts (``python bench/bench_x.py``), so this directory is on their
import path and ``import benchkit`` finds this module.
"""

from __future__ import annotations

import socket
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(base: str, prefix: str) -> tuple[str, str, str]:
    """Create ``<prefix>_<random>`` beside ``base``'s database; (admin URL, its name,
    its URL), all with the psycopg driver."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    admin_url = url.render_as_string(hide_password=False)
    return admin_url, name, url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
