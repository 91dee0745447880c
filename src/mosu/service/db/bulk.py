"""Multi-row inserts and key lookups whose statement text does not depend on the row count.

An ``INSERT ... VALUES (...), (...)`` of n rows is a new statement for every n: the
driver rewrites its placeholders (psycopg does it in Python, for every parameter, and
caches only short statements) and PostgreSQL parses and plans it again, on every group
commit of submissions. On PostgreSQL the rows go instead as one array per column,
unnested server-side: one statement text per table, which psycopg converts once and
prepares after a few uses, whatever the batch size. SQLite (one process, no
network, no plan to reuse) keeps the plain multi-row insert.

Columns are cast to their declared type in the statement, so the arrays' element types
as the driver guesses them (int2 or int8, text for a list of NULLs) never matter. The
arrays travel in binary (``%b``): psycopg's text format escapes every string element
with a regular expression, which costs more than the statement saves. Only
plain column types are supported: the values must be what the column stores (JSON is
serialized here with ``json.dumps``, as SQLAlchemy's default serializer does); an insert
of columns the table does not describe takes the generic path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Column, Connection, Insert, Table, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement


def unnest_applies(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_rows(
    conn: Connection,
    stmt: Insert,
    rows: Sequence[Mapping[str, Any]],
    returning: ColumnElement[Any] | None = None,
) -> list[Any]:
    """Insert ``rows`` (all with the same keys) with ``stmt``, an ``insert(table)``; with
    ``returning`` (the table's autoincrement key), its values in the order of ``rows``."""
    if not rows:
        return []
    given = tuple(rows[0])
    plan = _plan(stmt, given)
    if not unnest_applies(conn) or plan is None:
        if returning is None:
            conn.execute(stmt, list(rows))
            return []
        generic = stmt.returning(returning, sort_by_parameter_order=True)
        return list(conn.execute(generic, list(rows)).scalars())
    assert isinstance(stmt.table, Table)
    columns, defaults = plan
    key = returning.key if returning is not None else None
    names = given + tuple(defaults)
    sql = _unnest_insert(conn.dialect, stmt.table, names, key)
    params = tuple(_array(column, [row[column.key] for row in rows]) for column in columns)
    params += tuple(
        _array(stmt.table.c[name], [value] * len(rows)) for name, value in defaults.items()
    )
    if key is None:
        conn.exec_driver_sql(sql, params)
        return []
    # The rows are inserted in ``ord`` order and draw the sequence in that order, so the
    # ascending keys are the rows' keys in the order given.
    return sorted(r[0] for r in conn.exec_driver_sql(sql, params))


def select_by_pairs(
    conn: Connection,
    table: Table,
    pair: tuple[str, str],
    pairs: Sequence[tuple[Any, Any]],
    wanted: Sequence[str],
) -> list[Any]:
    """The rows of ``table`` (``wanted`` columns) whose two ``pair`` columns are one of
    ``pairs``."""
    if not pairs:
        return []
    first, second = table.c[pair[0]], table.c[pair[1]]
    if not unnest_applies(conn):
        query = select(*(table.c[w] for w in wanted)).where(tuple_(first, second).in_(pairs))
        return list(conn.execute(query))
    sql = _unnest_select(conn.dialect, table, pair, tuple(wanted))
    params = (
        _array(first, [p[0] for p in pairs]),
        _array(second, [p[1] for p in pairs]),
    )
    return list(conn.exec_driver_sql(sql, params))


@lru_cache(maxsize=64)
def _plan(stmt: Insert, names: tuple[str, ...]) -> tuple[list[Column[Any]], dict[str, Any]] | None:
    """The columns ``names`` name, and the client-side defaults of the columns they do
    not (SQLAlchemy's insert fills those in; this one must too); None when the table
    does not describe them or a default is not a constant."""
    table = stmt.table
    if not isinstance(table, Table):
        return None
    found = [table.c.get(name) for name in names]
    columns = [c for c in found if isinstance(c, Column)]
    if len(columns) != len(names):
        return None
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in names or column.default is None:
            continue
        if not column.default.is_scalar:
            return None
        defaults[column.key] = getattr(column.default, "arg", None)
    return columns, defaults


def _array(column: Column[Any], values: list[Any]) -> list[Any]:
    if isinstance(column.type, JSON):
        return [None if v is None else json.dumps(v) for v in values]
    return values


@lru_cache(maxsize=64)
def _unnest_insert(dialect: Dialect, table: Table, names: tuple[str, ...], key: str | None) -> str:
    quote = dialect.identifier_preparer.quote
    cols = ", ".join(quote(n) for n in names)
    arrays = ", ".join(f"CAST(%b AS {_array_type(dialect, table.c[n])})" for n in names)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({cols}) "
        f"SELECT {cols} FROM unnest({arrays}) WITH ORDINALITY AS u({cols}, ord) ORDER BY ord"
    )
    if key is not None:
        sql += f" RETURNING {quote(key)}"
    return sql


@lru_cache(maxsize=64)
def _unnest_select(
    dialect: Dialect, table: Table, pair: tuple[str, str], wanted: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    a, b = (quote(n) for n in pair)
    arrays = ", ".join(f"CAST(%b AS {_array_type(dialect, table.c[n])})" for n in pair)
    return (
        f"SELECT {', '.join('t.' + quote(w) for w in wanted)} "
        f"FROM {dialect.identifier_preparer.format_table(table)} AS t "
        f"WHERE (t.{a}, t.{b}) IN (SELECT * FROM unnest({arrays}))"
    )


def _array_type(dialect: Dialect, column: Column[Any]) -> str:
    return f"{column.type.compile(dialect=dialect)}[]"
