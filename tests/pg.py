"""PostgreSQL for tests: the server named by ``MOSU_TEST_POSTGRES_URL`` and throwaway
databases on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def postgres_url() -> str:
    """``MOSU_TEST_POSTGRES_URL`` with the psycopg driver; skips the test when it is unset."""
    url = os.environ.get("MOSU_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MOSU_TEST_POSTGRES_URL is not set: this test needs PostgreSQL")
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(url: str, prefix: str) -> Iterator[str]:
    """Create a database named ``<prefix>_<random>`` beside ``url``'s, yield its URL,
    and drop it (closing any connection left open) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
